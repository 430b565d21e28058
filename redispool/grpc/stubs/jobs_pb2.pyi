from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnqueueRequest(_message.Message):
    __slots__ = ("queue", "payload", "priority", "delay", "max_attempts", "lease", "unique_key", "job_id", "timeout")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_KEY_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    payload: str
    priority: int
    delay: float
    max_attempts: int
    lease: float
    unique_key: str
    job_id: str
    timeout: float
    def __init__(self, queue: _Optional[str] = ..., payload: _Optional[str] = ..., priority: _Optional[int] = ..., delay: _Optional[float] = ..., max_attempts: _Optional[int] = ..., lease: _Optional[float] = ..., unique_key: _Optional[str] = ..., job_id: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class EnqueueReply(_message.Message):
    __slots__ = ("id", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    created: bool
    def __init__(self, id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class EnqueueBatchRequest(_message.Message):
    __slots__ = ("queue", "jobs")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    jobs: _containers.RepeatedCompositeFieldContainer[EnqueueRequest]
    def __init__(self, queue: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[EnqueueRequest, _Mapping]]] = ...) -> None: ...

class EnqueueBatchReply(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkRequest(_message.Message):
    __slots__ = ("open", "credit", "ack")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    open: Open
    credit: int
    ack: Ack
    def __init__(self, open: _Optional[_Union[Open, _Mapping]] = ..., credit: _Optional[int] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Open(_message.Message):
    __slots__ = ("queues", "worker_id", "lease", "credit")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedScalarFieldContainer[str]
    worker_id: str
    lease: float
    credit: int
    def __init__(self, queues: _Optional[_Iterable[str]] = ..., worker_id: _Optional[str] = ..., lease: _Optional[float] = ..., credit: _Optional[int] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("queue", "id", "token")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    queue: str
    id: str
    token: str
    def __init__(self, queue: _Optional[str] = ..., id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("job", "result")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    result: str
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., result: _Optional[str] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("job", "error", "no_retry", "delay")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NO_RETRY_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    error: str
    no_retry: bool
    delay: float
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., error: _Optional[str] = ..., no_retry: _Optional[bool] = ..., delay: _Optional[float] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("completed", "failed", "released", "progress")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    completed: _containers.RepeatedCompositeFieldContainer[Completed]
    failed: _containers.RepeatedCompositeFieldContainer[Failed]
    released: _containers.RepeatedCompositeFieldContainer[JobRef]
    progress: _containers.RepeatedCompositeFieldContainer[Progress]
    def __init__(self, completed: _Optional[_Iterable[_Union[Completed, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[Failed, _Mapping]]] = ..., released: _Optional[_Iterable[_Union[JobRef, _Mapping]]] = ..., progress: _Optional[_Iterable[_Union[Progress, _Mapping]]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("job", "value", "message")
    JOB_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    value: float
    message: str
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., value: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class WorkReply(_message.Message):
    __slots__ = ("jobs", "results")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    jobs: JobBatch
    results: AckResults
    def __init__(self, jobs: _Optional[_Union[JobBatch, _Mapping]] = ..., results: _Optional[_Union[AckResults, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("queue", "id", "token", "payload", "attempt", "max_attempts", "lease_expires_at", "timeout")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    id: str
    token: str
    payload: str
    attempt: int
    max_attempts: int
    lease_expires_at: float
    timeout: float
    def __init__(self, queue: _Optional[str] = ..., id: _Optional[str] = ..., token: _Optional[str] = ..., payload: _Optional[str] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., lease_expires_at: _Optional[float] = ..., timeout: _Optional[float] = ...) -> None: ...

class JobBatch(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class AckResult(_message.Message):
    __slots__ = ("queue", "id", "ok", "state", "error")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    queue: str
    id: str
    ok: bool
    state: str
    error: str
    def __init__(self, queue: _Optional[str] = ..., id: _Optional[str] = ..., ok: _Optional[bool] = ..., state: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class AckResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AckResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AckResult, _Mapping]]] = ...) -> None: ...
