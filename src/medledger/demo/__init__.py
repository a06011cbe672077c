"""The demonstration scenario `medledger demo` runs on the embedded network."""

from medledger.demo.scenario import DemoSummary, run_foundation_scenario

__all__ = ["DemoSummary", "run_foundation_scenario"]
