"""Broker backends behind one seam (see :mod:`streamnb.transport.base`)."""

from .base import TP, Consumer, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport

__all__ = ["Consumer", "Message", "ProducerRecord", "RebalanceListener", "TP", "TopicSpec", "Transport"]
