// What every test target imports: the testing products, and the helpers that only GPS's own
// tests need (the `gps` binary as a process, raw sockets, an HTTP client of the web UI).
@_exported import GPSServerTesting
@_exported import GPSTesting
