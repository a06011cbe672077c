"""Ordering: the `Orderer` interface that sequences transactions into numbered batches.

Peers pull batch n with `read(n)`, execute it and build block n themselves. Backends live
beside this module: `solo` (in-process, the embedded default).
"""

from medledger.ordering.cutter import BlockCutter, CutterConfig
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError

__all__ = ["BlockCutter", "CutterConfig", "OrderedBatch", "Orderer", "OrderingError"]
