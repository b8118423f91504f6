from .detection_errors import DetectionErrorMetric, count_errors

__all__ = ['DetectionErrorMetric', 'count_errors']
