"""Detections (README.md#detections): one module per detector plus the shared machinery.

base.py      the detector contract (DetectorSpec, Detector, Finding, Context)
kinds.py     generic drivers: single event, event count, ratio, count-then, distinct values,
             absence; provided() for the quantities a spec declares
windows.py   sliding counts, ratios, distinct values, expectations/timers (JSON state)
common.py    event context, scope matching, enrichment accessors shared by detectors
policy.py    the policy file (thresholds, enable/severity, lists, exceptions)
registry.py  discovery of ``DETECTOR`` in every module here; routing subjects
engine.py    runs the detectors of one subject over a batch and the watermark
alerts.py    findings -> OCSF Detection Findings with deterministic ids

Nothing is imported here: detector modules import the machinery, and the registry
imports the detector modules, so an eager import would be circular.
"""
