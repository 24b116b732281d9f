from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SteeringMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEERING_MODE_UNSPECIFIED: _ClassVar[SteeringMode]
    STEERING_MODE_SET: _ClassVar[SteeringMode]
    STEERING_MODE_ADD: _ClassVar[SteeringMode]
    STEERING_MODE_SCALE: _ClassVar[SteeringMode]

class SteeringPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEERING_POSITION_UNSPECIFIED: _ClassVar[SteeringPosition]
    STEERING_POSITION_LAST: _ClassVar[SteeringPosition]
    STEERING_POSITION_ALL: _ClassVar[SteeringPosition]
STEERING_MODE_UNSPECIFIED: SteeringMode
STEERING_MODE_SET: SteeringMode
STEERING_MODE_ADD: SteeringMode
STEERING_MODE_SCALE: SteeringMode
STEERING_POSITION_UNSPECIFIED: SteeringPosition
STEERING_POSITION_LAST: SteeringPosition
STEERING_POSITION_ALL: SteeringPosition

class Steering(_message.Message):
    __slots__ = ("feature_id", "attribute", "value", "mode", "position")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    attribute: str
    value: float
    mode: SteeringMode
    position: SteeringPosition
    def __init__(self, feature_id: _Optional[int] = ..., attribute: _Optional[str] = ..., value: _Optional[float] = ..., mode: _Optional[_Union[SteeringMode, str]] = ..., position: _Optional[_Union[SteeringPosition, str]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("history", "k", "steering", "exclude_seen", "allow_items", "deny_items", "include_attributes", "exclude_attributes", "include_unsteered")
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    STEERING_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DENY_ITEMS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNSTEERED_FIELD_NUMBER: _ClassVar[int]
    history: _containers.RepeatedScalarFieldContainer[int]
    k: int
    steering: _containers.RepeatedCompositeFieldContainer[Steering]
    exclude_seen: bool
    allow_items: _containers.RepeatedScalarFieldContainer[int]
    deny_items: _containers.RepeatedScalarFieldContainer[int]
    include_attributes: _containers.RepeatedScalarFieldContainer[str]
    exclude_attributes: _containers.RepeatedScalarFieldContainer[str]
    include_unsteered: bool
    def __init__(self, history: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., steering: _Optional[_Iterable[_Union[Steering, _Mapping]]] = ..., exclude_seen: _Optional[bool] = ..., allow_items: _Optional[_Iterable[int]] = ..., deny_items: _Optional[_Iterable[int]] = ..., include_attributes: _Optional[_Iterable[str]] = ..., exclude_attributes: _Optional[_Iterable[str]] = ..., include_unsteered: _Optional[bool] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "genres")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    score: float
    title: str
    genres: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_id: _Optional[int] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., genres: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "unknown_item_ids", "truncated_items", "popularity_fallback", "applied_steering", "fewer_than_k", "unsteered_items")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    APPLIED_STEERING_FIELD_NUMBER: _ClassVar[int]
    FEWER_THAN_K_FIELD_NUMBER: _ClassVar[int]
    UNSTEERED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    model_version: str
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[int]
    truncated_items: int
    popularity_fallback: bool
    applied_steering: _containers.RepeatedCompositeFieldContainer[ResolvedSteering]
    fewer_than_k: bool
    unsteered_items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., unknown_item_ids: _Optional[_Iterable[int]] = ..., truncated_items: _Optional[int] = ..., popularity_fallback: _Optional[bool] = ..., applied_steering: _Optional[_Iterable[_Union[ResolvedSteering, _Mapping]]] = ..., fewer_than_k: _Optional[bool] = ..., unsteered_items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ...) -> None: ...

class RecommendBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RecommendRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RecommendRequest, _Mapping]]] = ...) -> None: ...

class RecommendBatchResponse(_message.Message):
    __slots__ = ("results", "model_version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecommendBatchResult]
    model_version: str
    def __init__(self, results: _Optional[_Iterable[_Union[RecommendBatchResult, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class RecommendBatchResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: RecommendResponse
    error: RequestError
    def __init__(self, response: _Optional[_Union[RecommendResponse, _Mapping]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("field", "message")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    message: str
    def __init__(self, field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ResolvedSteering(_message.Message):
    __slots__ = ("feature_id", "label", "value", "mode", "position")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    label: str
    value: float
    mode: SteeringMode
    position: SteeringPosition
    def __init__(self, feature_id: _Optional[int] = ..., label: _Optional[str] = ..., value: _Optional[float] = ..., mode: _Optional[_Union[SteeringMode, str]] = ..., position: _Optional[_Union[SteeringPosition, str]] = ...) -> None: ...

class ListFeaturesRequest(_message.Message):
    __slots__ = ("attribute", "label_contains", "alive_only", "page_size", "page_token")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    label_contains: str
    alive_only: bool
    page_size: int
    page_token: str
    def __init__(self, attribute: _Optional[str] = ..., label_contains: _Optional[str] = ..., alive_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFeaturesResponse(_message.Message):
    __slots__ = ("features", "next_page_token", "total")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[Feature]
    next_page_token: str
    total: int
    def __init__(self, features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class GetFeatureRequest(_message.Message):
    __slots__ = ("feature_id",)
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    def __init__(self, feature_id: _Optional[int] = ...) -> None: ...

class GetFeatureResponse(_message.Message):
    __slots__ = ("feature",)
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    feature: Feature
    def __init__(self, feature: _Optional[_Union[Feature, _Mapping]] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("feature_id", "label", "label_correlation", "label_auc", "firing_frequency", "max_activation", "top_items", "promoted_items", "top_feature_of_label", "label_confidence")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_AUC_FIELD_NUMBER: _ClassVar[int]
    FIRING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    TOP_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURE_OF_LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    label: str
    label_correlation: float
    label_auc: float
    firing_frequency: float
    max_activation: float
    top_items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    promoted_items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    top_feature_of_label: bool
    label_confidence: float
    def __init__(self, feature_id: _Optional[int] = ..., label: _Optional[str] = ..., label_correlation: _Optional[float] = ..., label_auc: _Optional[float] = ..., firing_frequency: _Optional[float] = ..., max_activation: _Optional[float] = ..., top_items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., promoted_items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., top_feature_of_label: _Optional[bool] = ..., label_confidence: _Optional[float] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("history", "k", "features")
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    history: _containers.RepeatedScalarFieldContainer[int]
    k: int
    features: int
    def __init__(self, history: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., features: _Optional[int] = ...) -> None: ...

class FeatureActivation(_message.Message):
    __slots__ = ("feature_id", "label", "activation", "label_confidence")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    label: str
    activation: float
    label_confidence: float
    def __init__(self, feature_id: _Optional[int] = ..., label: _Optional[str] = ..., activation: _Optional[float] = ..., label_confidence: _Optional[float] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("feature_id", "contribution", "total_effect")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EFFECT_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    contribution: float
    total_effect: float
    def __init__(self, feature_id: _Optional[int] = ..., contribution: _Optional[float] = ..., total_effect: _Optional[float] = ...) -> None: ...

class ExplainedItem(_message.Message):
    __slots__ = ("item", "contributions", "direct_total")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    item: ScoredItem
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    direct_total: float
    def __init__(self, item: _Optional[_Union[ScoredItem, _Mapping]] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., direct_total: _Optional[float] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("features", "items", "model_version", "unknown_item_ids")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureActivation]
    items: _containers.RepeatedCompositeFieldContainer[ExplainedItem]
    model_version: str
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureActivation, _Mapping]]] = ..., items: _Optional[_Iterable[_Union[ExplainedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., unknown_item_ids: _Optional[_Iterable[int]] = ...) -> None: ...
