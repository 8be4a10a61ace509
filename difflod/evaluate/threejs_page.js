// difflod's three.js render page (loaded by difflod/evaluate/threejs.py in headless Chromium).
//
// It fetches job.json, loads each glTF/GLB with three.js's own GLTFLoader (materials,
// normals, tangents, normal maps and emissive maps with KHR_materials_emissive_strength
// exactly as a three.js application would show them),
// renders every view into a float render target with one point light and no ambient
// light, and POSTs the linear RGBA pixels of each (model, view) back, row 0 = bottom.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

async function post(path, body) {
  const r = await fetch(path, { method: 'POST', body });
  if (!r.ok) throw new Error(`POST ${path}: ${r.status}`);
}

function rowMajor(m, values) {
  m.set(...values);
  return m;
}

async function main() {
  const job = await (await fetch('job.json')).json();
  const res = job.res;
  const renderer = new THREE.WebGLRenderer({ antialias: false });
  renderer.setSize(res, res);
  const target = new THREE.WebGLRenderTarget(res, res, {
    type: THREE.FloatType, samples: job.samples, depthBuffer: true });
  renderer.setClearColor(0x000000, 0.0);
  const pixels = new Float32Array(res * res * 4);
  const loader = new GLTFLoader();
  const camera = new THREE.PerspectiveCamera();
  camera.matrixAutoUpdate = false;
  camera.matrixWorldAutoUpdate = false;
  for (let mi = 0; mi < job.models.length; mi++) {
    const model = job.models[mi];
    const gltf = await loader.loadAsync(model.url);
    const scene = new THREE.Scene();
    const frame = new THREE.Group();
    frame.matrixAutoUpdate = false;
    rowMajor(frame.matrix, model.matrix);
    frame.matrixWorldNeedsUpdate = true;
    frame.add(gltf.scene);
    scene.add(frame);
    gltf.scene.traverse((o) => { o.frustumCulled = false; });
    const light = new THREE.PointLight(0xffffff, job.light_power, 0, 0);
    scene.add(light);
    for (let vi = 0; vi < job.views.length; vi++) {
      const view = job.views[vi];
      rowMajor(camera.projectionMatrix, view.proj);
      camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
      rowMajor(camera.matrixWorldInverse, view.view);
      camera.matrixWorld.copy(camera.matrixWorldInverse).invert();
      camera.matrix.copy(camera.matrixWorld);
      light.position.set(...view.light);
      renderer.setRenderTarget(target);
      renderer.clear();
      renderer.render(scene, camera);
      renderer.readRenderTargetPixels(target, 0, 0, res, res, pixels);
      await post(`result?model=${mi}&view=${vi}`, pixels);
    }
  }
  await post('done', '');
}

main().catch((e) => post('error', String(e && e.stack ? e.stack : e)));
