"""The measurement agent (``nas-agent``, or ``nas agent``): installed on a target device with
ONNX Runtime and numpy alone (no torch), it registers with a ``nas serve`` under a name, pulls ONNX
models to measure, times them with the local profiler's discipline and posts the figures back.

Also the lowest floor of the repository: the torch-free timing discipline (``timing``), the
ONNX Runtime measurement (``measure``), the hardware fingerprint (``fingerprint``) and the
machine-wide measurement lock's files (``locks``), which latency_models and infra build on.
"""

__version__ = "0.1.0"
