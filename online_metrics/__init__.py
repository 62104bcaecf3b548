"""Online metrics of what users were shown: attribution of outcomes to impressions and the
significance test between two variants (bundle versions or experiment arms).

`attribution` and `significance` are pure; `from_logs` reads a region's impressions and outcome
streams (through replication) and hands them to `attribution`.
"""
