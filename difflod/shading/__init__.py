"""shading"""
