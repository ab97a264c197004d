// The worker SDK in one import: flows, steps, deployments, parameters, `Worker` and the control
// client (Flows), runs and the control API's messages (GPSModel), service addresses and gRPC
// helpers (RPC). It links no log, no SQLite, no LZ4 and no server code.
@_exported public import Flows
@_exported public import GPSModel
@_exported public import RPC
