from .synthetic import CLASSES, SEG_CLASSES, SEG_PALETTE, generate, is_generated, render_scene

__all__ = ['CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'generate', 'is_generated', 'render_scene']
