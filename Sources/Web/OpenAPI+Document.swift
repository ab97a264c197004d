import Flows
import GPSModel

// The document itself: every path of the web API, and the schemas of what they take and answer.
extension OpenAPI {
  static func build() -> JSONValue {
    let runPattern = object([("type", .string("string")), ("pattern", .string("^([0-9a-fA-F-]{8,36})?$"))])
    let runID = parameter(
      "id", in: "path", object([("type", .string("string")), ("pattern", .string("^[0-9a-fA-F-]{8,36}$"))]),
      "a run id (36 characters) or a unique prefix of 8 or more")
    let limit = object([
      ("type", .string("integer")), ("minimum", .number("1")),
      ("description", .string("larger than the most a page holds: the most")),
    ])
    let sequence = object([("type", .string("string")), ("pattern", .string("^[0-9]{1,19}$"))])
    let time = object([
      (
        "anyOf",
        .array([
          object([("type", .string("string")), ("format", .string("date-time"))]),
          object([("type", .string("string")), ("pattern", .string("^[0-9]{1,18}$"))]),
          object([("type", .string("string")), ("maxLength", .number("0"))]),
        ])
      ),
      ("description", .string("RFC 3339 (2026-12-01T12:00:00Z) or microseconds since 1970")),
    ])
    let after = parameter("after", in: "query", sequence, "only events after this sequence (a page's next_after)")
    let eventPage = object([
      ("type", .string("object")),
      (
        "properties",
        object([
          ("events", object([("type", .string("array")), ("items", ref("gps.v1.HistoryEvent"))])),
          ("next_after", sequence),
        ])
      ),
      ("required", .array([.string("events")])), ("additionalProperties", .bool(false)),
    ])
    let runAnswer = object([
      ("type", .string("object")),
      ("properties", object([("run", ref("gps.v1.RunInfo")), ("result_json", object([]))])),
      ("required", .array([.string("run")])), ("additionalProperties", .bool(false)),
    ])
    let reason = object([
      ("type", .string("object")), ("properties", object([("reason", string())])),
      ("additionalProperties", .bool(false)),
    ])
    let sse = object([
      (
        "description",
        .string("server-sent events: each durable event as a gps.v1.HistoryEvent (id: its sequence), then an end event")
      ),
      (
        "content",
        object([
          (
            "text/event-stream",
            object([
              (
                "schema",
                object([
                  ("type", .string("object")),
                  (
                    "properties",
                    object([("data", string()), ("event", string()), ("id", string()), ("retry", string())])
                  ),
                ])
              )
            ])
          )
        ])
      ),
    ])
    let paths = object([
      (
        "/api/runs",
        object([
          (
            "get",
            operation(
              "listRuns", "Runs, newest first, filtered; a page at a time",
              parameters: [
                parameter(
                  "state", in: "query", object([("type", .string("string")), ("pattern", .string(statePattern))]),
                  "Scheduled, Pending, Running, Completed, … (any case; repeat or comma-separate)"
                ),
                parameter("deployment", in: "query", string(), "FLOW/NAME"),
                parameter("tag", in: "query", string(), "runs with this tag"),
                parameter("enqueued_after", in: "query", time, "enqueued at or after"),
                parameter("enqueued_before", in: "query", time, "enqueued before"),
                parameter("limit", in: "query", limit, "at most this many (default 100, at most 1000)"),
                parameter(
                  "cursor", in: "query", object([("type", .string("string")), ("pattern", .string("^[0-9]{0,18}$"))]),
                  "the previous page's next_cursor"),
              ], responses: [("200", json(ref("gps.v1.ListRunsResponse"), "a page of runs"))])
          ),
          (
            "post",
            operation(
              "enqueueRun", "Enqueue a run: its parameters are validated against the deployment's types",
              body: ref("EnqueueRequest"),
              responses: [
                ("201", linkingRun(json(ref("EnqueueAnswer"), "the run was enqueued (durably)"), at: "/run/id")),
                (
                  "200",
                  linkingRun(
                    json(ref("EnqueueAnswer"), "a run with this idempotency key existed: it is that run"),
                    at: "/run/id")
                ),
                ("400", json(ref("Error"), "invalid: every problem with the path of its field, nothing written")),
              ])
          ),
        ])
      ),
      (
        "/api/runs/{id}",
        object([
          ("get", operation("getRun", "One run", parameters: [runID], responses: [("200", json(runAnswer, "the run"))]))
        ])
      ),
      (
        "/api/runs/{id}/events",
        object([
          (
            "get",
            operation(
              "runEvents", "A run's events, oldest first, a page at a time",
              parameters: [
                runID, after, parameter("limit", in: "query", limit, "at most this many (default 500, at most 5000)"),
              ],
              responses: [("200", json(eventPage, "a page of events"))])
          )
        ])
      ),
      (
        "/api/runs/{id}/stream",
        object([
          (
            "get",
            operation(
              "watchRun", "A run's events as they become durable, until it ends", parameters: [runID, after],
              responses: [("200", sse)])
          )
        ])
      ),
      (
        "/api/runs/{id}/cancel",
        object([
          (
            "post",
            operation(
              "cancelRun", "Cancel a run", parameters: [runID], body: reason, bodyRequired: false,
              responses: [("200", json(runAnswer, "the run, cancelled or being cancelled"))])
          )
        ])
      ),
      (
        "/api/runs/{id}/retry",
        object([
          (
            "post",
            operation(
              "retryRun", "Run a finished run again", parameters: [runID], body: reason, bodyRequired: false,
              responses: [("200", json(runAnswer, "the run, scheduled again"))])
          )
        ])
      ),
      (
        "/api/deployments",
        object([
          (
            "get",
            operation(
              "listDeployments", "The registered deployments, their versions, workers and status",
              responses: [("200", json(ref("gps.v1.ListDeploymentsResponse"), "the deployments"))])
          )
        ])
      ),
      (
        "/api/cluster",
        object([
          (
            "get",
            operation(
              "getCluster",
              "The cluster of a server whose log is in PostgreSQL: the leader, the log's end, and every server with its role and lag (404 on a server of the file log)",
              responses: [
                (
                  "200",
                  json(
                    object([
                      ("type", .string("object")),
                      (
                        "properties",
                        object([
                          ("cluster_id", string()),
                          ("leader", object([("type", .string("object"))])),
                          ("last_sequence", object([("type", .string("integer"))])),
                          (
                            "servers",
                            object([("type", .string("array")), ("items", object([("type", .string("object"))]))])
                          ),
                        ])
                      ),
                    ]), "the cluster")
                )
              ])
          )
        ])
      ),
      (
        "/api/deployments/{flow}/{name}",
        object([
          (
            "get",
            operation(
              "getDeployment", "A deployment: its newest definition and the JSON Schema of its parameters",
              parameters: [
                parameter("flow", in: "path", string(), "the flow"),
                parameter("name", in: "path", string(), "the deployment's name"),
              ],
              responses: [
                (
                  "200",
                  json(
                    object([
                      ("type", .string("object")),
                      (
                        "properties",
                        object([
                          ("deployment", ref("gps.v1.DeploymentInfo")),
                          ("parameter_schema", object([("type", .string("object"))])),
                        ])
                      ),
                      ("required", .array([.string("deployment"), .string("parameter_schema")])),
                      ("additionalProperties", .bool(false)),
                    ]), "the deployment")
                )
              ])
          )
        ])
      ),
      (
        "/api/history",
        object([
          (
            "get",
            operation(
              "readHistory", "The log's events, oldest first, a page at a time",
              parameters: [
                after, parameter("from_time", in: "query", time, "only events at or after this time"),
                parameter("run", in: "query", runPattern, "only this run's events (its id or a prefix of 8 or more)"),
                parameter("limit", in: "query", limit, "at most this many (default 500, at most 5000)"),
              ], responses: [("200", json(eventPage, "a page of events"))])
          )
        ])
      ),
      (
        "/api/history/stream",
        object([
          (
            "get",
            operation(
              "followHistory", "The log's events as they become durable",
              parameters: [
                after,
                parameter("run", in: "query", runPattern, "only this run's events (its id or a prefix of 8 or more)"),
              ],
              responses: [("200", sse)])
          )
        ])
      ),
      (
        "/api/history/verify",
        object([
          (
            "post",
            operation(
              "verifyHistory", "Verify every batch's checksum and the hash chain of the log",
              responses: [("200", json(ref("VerifyReport"), "the verification"))])
          )
        ])
      ),
    ])
    var schemas = pool.jsonSchemas(of: [
      "gps.v1.ListRunsResponse", "gps.v1.RunInfo", "gps.v1.HistoryEvent", "gps.v1.ListDeploymentsResponse",
      "gps.v1.DeploymentInfo",
    ]).mapValues { relocated($0) }
    // The API gives an event's run as its UUID string (``Site/eventText(_:)``).
    if let event = schemas["gps.v1.Event"] {
      schemas["gps.v1.Event"] = updating(event, at: ["properties", "run_id"]) { _ in
        object([
          ("type", .string("string")), ("format", .string("uuid")),
          ("description", .string("The run's id (absent for records of the queue and notes of the log).")),
        ])
      }
    }
    schemas["Error"] = object([
      ("type", .string("object")),
      (
        "properties",
        object([
          (
            "error",
            object([
              ("type", .string("object")),
              (
                "properties",
                object([
                  ("code", string("a gRPC status name: INVALID_ARGUMENT, NOT_FOUND, …")), ("message", string()),
                  ("leader_url", string("on a standby's refusal of a write (503): the leader's web UI, where it goes")),
                  (
                    "problems",
                    object([
                      ("type", .string("array")),
                      (
                        "items",
                        object([
                          ("type", .string("object")),
                          ("properties", object([("path", string()), ("message", string())])),
                          ("required", .array([.string("path"), .string("message")])),
                        ])
                      ),
                    ])
                  ),
                ])
              ), ("required", .array([.string("code"), .string("message")])),
            ])
          )
        ])
      ), ("required", .array([.string("error")])),
    ])
    schemas["EnqueueRequest"] = object([
      ("type", .string("object")),
      (
        "properties",
        object([
          (
            "deployment",
            object([
              ("type", .string("string")), ("pattern", .string("^[^/]+/[^/]+$")), ("description", .string("FLOW/NAME")),
            ])
          ),
          (
            "parameters",
            object([("type", .string("object")), ("description", .string("the deployment's parameter_schema"))])
          ),
          (
            "idempotency_key",
            object([
              ("type", .string("string")), ("maxLength", .number("1024")), ("pattern", .string(namePattern)),
              ("description", .string("a second enqueue with the same key returns the first run")),
            ])
          ),
          (
            "tags",
            object([
              ("type", .string("array")), ("maxItems", .number("64")),
              (
                "items",
                object([
                  ("type", .string("string")), ("minLength", .number("1")), ("maxLength", .number("256")),
                  ("pattern", .string(namePattern)),
                ])
              ),
            ])
          ),
          ("scheduled_start", object([("type", .string("string")), ("format", .string("date-time"))])),
          (
            "start_in",
            object([
              ("type", .string("string")), ("pattern", .string("^[0-9]{1,6}(\\.[0-9]{1,3})?(ms|s|m|h|d)$")),
              ("description", .string("a duration such as 90s, 5m, 2h")),
            ])
          ),
        ])
      ), ("required", .array([.string("deployment")])), ("additionalProperties", .bool(false)),
    ])
    schemas["EnqueueAnswer"] = object([
      ("type", .string("object")),
      ("properties", object([("run", ref("gps.v1.RunInfo")), ("created", object([("type", .string("boolean"))]))])),
      ("required", .array([.string("run"), .string("created")])), ("additionalProperties", .bool(false)),
    ])
    let count = object([("type", .string("integer")), ("minimum", .number("0"))])
    schemas["VerifyReport"] = object([
      ("type", .string("object")),
      (
        "properties",
        object([
          ("ok", object([("type", .string("boolean"))])), ("segments", count), ("batches", count), ("records", count),
          ("last_sequence", count), ("anchor_first_sequence", count), ("problem", string()),
        ])
      ), ("required", .array([.string("ok")])), ("additionalProperties", .bool(false)),
    ])
    return object([
      ("openapi", .string("3.1.0")),
      (
        "info",
        object([
          ("title", .string("GPS")), ("version", .string("1")),
          (
            "description",
            .string(
              "The web API of gps server start: runs, deployments and the log's history. Requests that change something send Content-Type: application/json; with tokens, Authorization: Bearer TOKEN."
            )
          ),
        ])
      ),
      ("paths", paths),
      ("components", object([("schemas", .object(schemas.keys.sorted().map { .init($0, schemas[$0]!) }))])),
    ])
  }
}
