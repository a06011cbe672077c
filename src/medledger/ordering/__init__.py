"""Ordering: the `Orderer` interface that sequences transactions into numbered batches.

Peers pull batch n with `read(n)`, execute it and build block n themselves. Backends live
beside this module: `solo` (in-process, the embedded default; `solo_server` serves it over HTTP
to peers in other processes, `remote` is their client) and `etcd` (Raft through an etcd cluster).
"""

from medledger.ordering.cutter import BlockCutter, CutterConfig
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError

__all__ = ["BlockCutter", "CutterConfig", "OrderedBatch", "Orderer", "OrderingError"]
