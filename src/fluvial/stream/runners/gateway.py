"""``--runner gateway``: submit a job to a Flink SQL Gateway over its REST API (v1).

One session per deployment: it is opened with the job's configuration as session
properties, every statement (``SET``, DDL, then the ``INSERT`` statements as one
``EXECUTE STATEMENT SET``) is executed in order and its operation polled until it
finishes, the ``INSERT``'s result gives Flink's job id, and the session is closed — the
job keeps running on the cluster. The requests::

    POST   /v1/sessions                                   {"sessionName", "properties"}
    POST   /v1/sessions/{session}/statements              {"statement"}
    GET    /v1/sessions/{session}/operations/{op}/status  -> {"status": "FINISHED" | …}
    GET    /v1/sessions/{session}/operations/{op}/result/0  -> the job id; Flink's error
    DELETE /v1/sessions/{session}

A statement Flink refuses raises :class:`~fluvial.errors.PipelineError` with Flink's
most specific cause and the statement's first line.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from fluvial.errors import PipelineError
from fluvial.stream.runners.base import Deployment, FlinkRunner

if TYPE_CHECKING:
    from fluvial.config import FlinkSettings
    from fluvial.stream.deploy import FlinkJob

__all__ = ["GatewayRunner"]

#: operation states after which polling stops
FINAL_STATES = ("FINISHED", "ERROR", "CANCELED", "CLOSED", "TIMEOUT")


class _Answered(PipelineError):
    """The gateway answered with an HTTP error; ``cause`` is Flink's message."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class GatewayRunner(FlinkRunner):
    """Submits jobs to the SQL Gateway at *url* (``http://host:8083``).

    *timeout* bounds the wait for one statement's operation; *poll_interval* is the
    pause between two status requests.
    """

    name: ClassVar[str] = "gateway"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.transport = transport

    @classmethod
    def from_settings(cls, settings: FlinkSettings) -> GatewayRunner:
        return cls(settings.gateway_url, timeout=settings.timeout_seconds)

    def deploy(self, job: FlinkJob) -> Deployment:
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=30.0, transport=self.transport) as http:
            opened = self._call(
                http,
                "POST",
                "/v1/sessions",
                {"sessionName": f"fluvial-{job.name}", "properties": dict(job.config)},
            )
            session = str(opened["sessionHandle"])
            job_id: str | None = None
            try:
                for number, statement in enumerate(job.submission(), 1):
                    submitted = self._call(
                        http,
                        "POST",
                        f"/v1/sessions/{session}/statements",
                        {"statement": statement},
                    )
                    operation = f"/v1/sessions/{session}/operations/{submitted['operationHandle']}"
                    self._wait(http, operation, number, statement)
                    if statement.lstrip()[:7].upper() in ("INSERT ", "EXECUTE"):
                        job_id = self._job_id(http, operation)
            finally:
                try:
                    self._call(http, "DELETE", f"/v1/sessions/{session}")
                except PipelineError:
                    pass  # the job was submitted (or refused) already; the session expires
        return Deployment(
            runner=self.name,
            job=job.name,
            state="submitted" if job_id else "finished",
            job_id=job_id,
            seconds=round(time.monotonic() - started, 3),
            where=self.url,
        )

    # -- HTTP -------------------------------------------------------------------------

    def _call(
        self, http: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request; its JSON answer, or PipelineError with Flink's message."""
        try:
            response = http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise PipelineError(
                f"cannot reach the Flink SQL Gateway at {self.url} ({method} {path}): {exc}"
            ) from exc
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {"errors": [response.text]}
        if response.is_error:
            cause = flink_cause(answer)
            raise _Answered(
                f"the Flink SQL Gateway answered {response.status_code} to {method} {path}: "
                f"{cause}",
                cause,
            )
        if not isinstance(answer, dict):
            raise PipelineError(f"expected a JSON object from {method} {path}, found {answer!r}")
        return answer

    def _wait(self, http: httpx.Client, operation: str, number: int, statement: str) -> None:
        """Poll the operation until it is final; raise with Flink's cause unless FINISHED."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = str(self._call(http, "GET", f"{operation}/status").get("status", ""))
            if status in FINAL_STATES:
                break
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"statement {number} ({_first_line(statement)}) did not finish within "
                    f"{self.timeout:g} s on the Flink SQL Gateway (status {status})"
                )
            time.sleep(self.poll_interval)
        if status == "FINISHED":
            return
        cause = f"operation {status}"
        if status == "ERROR":  # fetching the result of a failed operation returns its error
            try:
                self._call(http, "GET", f"{operation}/result/0")
            except _Answered as exc:
                cause = exc.cause
        raise PipelineError(f"Flink refused statement {number} ({_first_line(statement)}): {cause}")

    def _job_id(self, http: httpx.Client, operation: str) -> str | None:
        """Flink's job id from an INSERT's result (``jobID``, else the one result field)."""
        deadline = time.monotonic() + self.timeout
        while True:
            result = self._call(http, "GET", f"{operation}/result/0")
            if result.get("resultType") != "NOT_READY" or time.monotonic() > deadline:
                break
            time.sleep(self.poll_interval)
        if result.get("jobID"):
            return str(result["jobID"])
        rows = (result.get("results") or {}).get("data") or []
        fields = rows[0].get("fields") if rows and isinstance(rows[0], dict) else None
        return str(fields[0]) if fields else None


def flink_cause(answer: Any) -> str:
    """The most specific cause in a gateway error answer (``{"errors": [...]}``): the
    last ``Caused by:`` of Flink's stack traces, else the first line.

    >>> flink_cause({"errors": ["Internal server error.", "<Exception on server side:\\n"
    ...     "org.apache.flink.table.api.SqlParserException: bad\\n"
    ...     "Caused by: org.apache.calcite.sql.parser.SqlParseException: Encountered x"]})
    'org.apache.calcite.sql.parser.SqlParseException: Encountered x'
    """
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not errors:
        return str(answer)[:2000]
    lines = [ln.strip() for e in errors for ln in str(e).splitlines() if ln.strip()]
    causes = [ln.removeprefix("Caused by:").strip() for ln in lines if ln.startswith("Caused by:")]
    if causes:
        return causes[-1][:2000]
    specific = [
        ln for ln in lines if "Exception" in ln and not ln.startswith(("<", "End of exception"))
    ]
    return (specific[0] if specific else lines[0])[:2000]


def _first_line(statement: str) -> str:
    line = statement.strip().splitlines()[0]
    return line if len(line) <= 80 else line[:77] + "..."
