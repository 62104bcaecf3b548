"""The benchmarks, importable from the installed package (`regionctl bench`, bench/*.py scripts).

    serving_bench       p50/p99 and requests/s per tier over HTTP and gRPC; writes the calibration
    serving_peers       what the serving bench puts in front of its cell: the edge, and HAProxy as the peer
    serving_profile     the serving bench's stack under load, sampled by py-spy (bench/profile_serving.py)
    saturation_bench    one cell driven past saturation vs capacity.model.predicted_saturation_qps
    replication_bench   replication throughput and lag between real redis-servers
    edge_bench          the edge's overhead over a direct gRPC call to a cell
    recommender_bench   the in-process recommender on the demo bundle
    redis_stack         one real redis-server per region on free ports (also used by the replication tests)

Each prints figures; none asserts a speed (docs/benchmarks.md).
"""
