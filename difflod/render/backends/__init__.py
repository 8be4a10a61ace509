"""render/backends"""
