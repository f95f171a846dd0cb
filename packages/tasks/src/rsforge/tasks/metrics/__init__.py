"""Evaluation metrics: captions as coco-caption scores them (`captions`), change masks (`masks`)."""
