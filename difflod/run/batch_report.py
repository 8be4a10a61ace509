"""The batch's one report: OUT/summary.csv and OUT/report.html.

One row per result (per LOD of a chain), read from each model's own files:
its completion record (OUT/<name>/batch.json: budgets, seconds) and its
metrics.json (held-out PSNR / SSIM / FLIP of "qem_bake" and "difflod",
triangles, file sizes; a chain's one metrics.json names them
"qem_bake_lodK" and "difflod_lodK", run/lod.py). The gain
is difflod's PSNR minus qem_bake's, in dB. Failed models come first, with
their one-line error; then the results, worst first (lowest held-out PSNR
of difflod); the page adds the totals. Both files are written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from difflod.io.atomic import atomic_write_text

__all__ = ["COLUMNS", "result_rows", "write_summary"]

COLUMNS = ("name", "model", "status", "lod", "budget", "reference_triangles", "triangles",
           "qem_bake_psnr", "difflod_psnr", "gain_db", "qem_bake_ssim", "difflod_ssim",
           "qem_bake_flip", "difflod_flip", "qem_bake_bytes", "difflod_bytes", "seconds",
           "error")


def _float(value: Any) -> float | None:
    try:
        return float(value)  # metrics.json writes infinities as "inf"
    except (TypeError, ValueError):
        return None


def _levels(metrics: dict[str, Any]) -> list[tuple[int, str]]:
    """(LOD, candidate suffix) of a result's metrics.json: [(0, "")] for one model,
    [(0, "_lod0"), (1, "_lod1"), ...] for a chain (run/lod.py names its candidates so)."""
    lods = sorted(int(m.group(1)) for m in (re.fullmatch(r"difflod_lod(\d+)", k)
                                             for k in metrics.get("candidates", {})) if m)
    return [(k, f"_lod{k}") for k in lods] if lods else [(0, "")]


def _metric(cands: dict, name: str, key: str) -> float | None:
    value = cands.get(name, {}).get(key)
    return _float(value.get("mean")) if isinstance(value, dict) else _float(value)


def result_rows(out: Path, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's rows for the batch's records (completed and failed), failures first,
    then the results by difflod's held-out PSNR, lowest first."""
    failed, done = [], []
    for rec in records:
        base = {"name": rec["name"], "model": rec.get("model", ""), "status": rec["status"],
                "seconds": rec.get("seconds")}
        if rec["status"] != "ok":
            failed.append({**base, "error": rec.get("error", "")})
            continue
        budgets = rec.get("budgets") or []
        path = out / rec["name"] / "metrics.json"
        if not path.is_file():
            done.append({**base, "status": "no metrics", "budget": budgets[0] if budgets else None})
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))
        cands = metrics.get("candidates", {})
        for lod, suffix in _levels(metrics):
            qem, dl = f"qem_bake{suffix}", f"difflod{suffix}"
            row = {**base, "lod": lod, "budget": budgets[lod] if lod < len(budgets) else None,
                   "report": f"{rec['name']}/report/report.html",
                   "reference_triangles": metrics.get("reference", {}).get("triangles"),
                   "triangles": cands.get(dl, {}).get("triangles"),
                   "qem_bake_bytes": cands.get(qem, {}).get("file_bytes"),
                   "difflod_bytes": cands.get(dl, {}).get("file_bytes")}
            for cand, key in ((c, k) for c in (qem, dl) for k in ("psnr", "ssim", "flip")):
                row[f"{cand.removesuffix(suffix)}_{key}"] = _metric(cands, cand, key)
            if all(row[k] is not None and math.isfinite(row[k])
                   for k in ("difflod_psnr", "qem_bake_psnr")):
                row["gain_db"] = row["difflod_psnr"] - row["qem_bake_psnr"]
            done.append(row)
    done.sort(key=lambda r: (r.get("difflod_psnr") is not None,
                             r.get("difflod_psnr") or 0.0, r["name"], r.get("lod") or 0))
    return failed + done


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)  # 1e-4 dB / SSIM / FLIP / second: below any meaningful change
    return value


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return buf.getvalue()


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _kib(value: Any) -> str:
    return "–" if value is None else f"{value / 1024:,.1f}"


def _totals(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> list[tuple]:
    ok = [r for r in rows if r["status"] == "ok"]
    seconds = sum(float(r.get("seconds") or 0.0) for r in records)
    gains = [r["gain_db"] for r in ok if r.get("gain_db") is not None
             and math.isfinite(r["gain_db"])]
    return [("models", f"{len(records):,}"),
            ("completed", f"{sum(r['status'] == 'ok' for r in records):,}"),
            ("failed", f"{sum(r['status'] != 'ok' for r in records):,}"),
            ("results (LODs)", f"{len(ok):,}"),
            ("triangles, all results", f"{sum(r.get('triangles') or 0 for r in ok):,}"),
            ("GLB size, all results (KiB)", _kib(sum(r.get("difflod_bytes") or 0 for r in ok))),
            ("mean gain over QEM + bake (dB)",
             f"{sum(gains) / len(gains):+.2f}" if gains else "–"),
            ("results worse than QEM + bake", f"{sum(g < 0 for g in gains):,}"),
            ("model seconds, summed", f"{seconds:,.1f}")]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; text-align: center; } td.t { text-align: left; }
tr.worse td.g { color: #b00; font-weight: bold; } td.err { color: #b00; text-align: left; }
"""


def _page(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> str:
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           "<title>difflod batch report</title><style>", _STYLE, "</style></head><body>",
           "<h1>difflod batch report</h1><h2>Totals</h2><table>"]
    out += [f"<tr><td class='t'>{k}</td><td>{v}</td></tr>" for k, v in _totals(rows, records)]
    out.append("</table>")
    failed = [r for r in rows if r["status"] != "ok" and r.get("error")]
    if failed:
        out.append(f"<h2>Failed ({len(failed)})</h2><table><tr><th>model</th><th>error</th>"
                   "</tr>")
        out += [f"<tr><td class='t'>{_fmt(r['name'])}</td><td class='err'>{_fmt(r['error'])}"
                f"</td></tr>" for r in failed]
        out.append("</table>")
    ok = [r for r in rows if r["status"] == "ok"]
    out.append("<h2>Results, worst first (held-out PSNR of difflod)</h2><table><tr>"
               "<th>model</th><th>LOD</th><th>triangles</th><th>of</th>"
               "<th>PSNR QEM+bake</th><th>PSNR difflod</th><th>gain dB</th>"
               "<th>SSIM QEM+bake</th><th>SSIM difflod</th><th>FLIP QEM+bake</th>"
               "<th>FLIP difflod</th><th>GLB KiB QEM+bake</th><th>GLB KiB difflod</th>"
               "<th>seconds</th></tr>")
    for r in ok:
        worse = r.get("gain_db") is not None and r["gain_db"] < 0
        report = r.get("report", "")
        out.append(
            f"<tr{' class=worse' if worse else ''}><td class='t'>"
            f"<a href='{html.escape(report)}'>{_fmt(r['name'])}</a></td><td>{_fmt(r['lod'])}"
            f"</td><td>{_fmt(r.get('triangles'))}</td><td>{_fmt(r.get('reference_triangles'))}"
            f"</td><td>{_fmt(r.get('qem_bake_psnr'))}</td><td>{_fmt(r.get('difflod_psnr'))}</td>"
            f"<td class='g'>{_fmt(r.get('gain_db'), 2, signed=True)}</td>"
            f"<td>{_fmt(r.get('qem_bake_ssim'), 4)}</td><td>{_fmt(r.get('difflod_ssim'), 4)}"
            f"</td><td>{_fmt(r.get('qem_bake_flip'), 4)}</td>"
            f"<td>{_fmt(r.get('difflod_flip'), 4)}</td><td>{_kib(r.get('qem_bake_bytes'))}</td>"
            f"<td>{_kib(r.get('difflod_bytes'))}</td><td>{_fmt(r.get('seconds'), 1)}</td></tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)


def write_summary(out: Path, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write OUT/summary.csv and OUT/report.html for the batch's records; return the rows."""
    rows = result_rows(out, records)
    atomic_write_text(out / "summary.csv", _csv(rows))
    atomic_write_text(out / "report.html", _page(rows, records))
    return rows
