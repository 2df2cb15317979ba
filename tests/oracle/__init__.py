"""Kafka Streams as a test oracle: ``from oracle.kstreams import OracleCase, run_cases``."""
