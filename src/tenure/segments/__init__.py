"""Segments: the rule language, built-in RFM and stage segments, clustering, live membership."""

from tenure.segments.rules import Condition, parse_rule
from tenure.segments.service import Preview, RefreshResult, SegmentInfo, Segments

__all__ = ["Condition", "Preview", "RefreshResult", "SegmentInfo", "Segments", "parse_rule"]
