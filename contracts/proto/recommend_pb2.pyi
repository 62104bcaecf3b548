from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Surface(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOMEPAGE: _ClassVar[Surface]
    SIMILAR: _ClassVar[Surface]
    CART: _ClassVar[Surface]
HOMEPAGE: Surface
SIMILAR: Surface
CART: Surface

class RecommendRequest(_message.Message):
    __slots__ = ("surface", "user_id", "product_id", "cart_items", "count", "deadline_ms", "max_tier", "anonymous", "geography")
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ITEMS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIER_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    GEOGRAPHY_FIELD_NUMBER: _ClassVar[int]
    surface: Surface
    user_id: str
    product_id: str
    cart_items: _containers.RepeatedScalarFieldContainer[str]
    count: int
    deadline_ms: float
    max_tier: str
    anonymous: bool
    geography: str
    def __init__(self, surface: _Optional[_Union[Surface, str]] = ..., user_id: _Optional[str] = ..., product_id: _Optional[str] = ..., cart_items: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., deadline_ms: _Optional[float] = ..., max_tier: _Optional[str] = ..., anonymous: _Optional[bool] = ..., geography: _Optional[str] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "score")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Skip(_message.Message):
    __slots__ = ("tier", "reason")
    TIER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tier: str
    reason: str
    def __init__(self, tier: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "tier", "region", "bundle_version", "skipped", "stale", "latency_ms", "experiment", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    tier: str
    region: str
    bundle_version: str
    skipped: _containers.RepeatedCompositeFieldContainer[Skip]
    stale: bool
    latency_ms: float
    experiment: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., tier: _Optional[str] = ..., region: _Optional[str] = ..., bundle_version: _Optional[str] = ..., skipped: _Optional[_Iterable[_Union[Skip, _Mapping]]] = ..., stale: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "user_id", "item_id", "type", "ts", "session_id", "seq", "price", "geo")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    session_id: str
    seq: int
    price: float
    geo: str
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[str] = ..., ts: _Optional[float] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ..., price: _Optional[float] = ..., geo: _Optional[str] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class LogAck(_message.Message):
    __slots__ = ("accepted", "stream_ids")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    STREAM_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    stream_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., stream_ids: _Optional[_Iterable[str]] = ...) -> None: ...
