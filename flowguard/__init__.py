"""flowguard: flags stratum mining and reverse tunnels in mirrored traffic, from flow behaviour."""

from flowguard.errors import CaptureError, FlowguardError, ModelError
from flowguard.model import FlowClassifier

__version__ = "0.1.0"

__all__ = ["CaptureError", "FlowClassifier", "FlowguardError", "ModelError", "__version__"]
