// The shapes of the serving figures that leave the process as JSON (/healthz,
// /v1/stats/recent) and are read by the dashboard in the browser too: plain types, no
// imports, so the front-end's build can use them as they are.

export interface UpstreamState {
  upstream: string;
  up: boolean;
  lastRttMs: number;
  /** Smoothed round-trip time of its answers (0 before the first). */
  srttMs: number;
  /** Attempts it answered, and attempts that failed (timed out, or a socket error). */
  answered: number;
  failed: number;
}

export interface ProcessFigures {
  worker: number;
  residentBytes: number;
  heapUsedBytes: number;
  /** The share of time the event loop was busy since the previous reading (0-1): how near saturation. */
  eventLoopUtilization: number;
  /** CPU time (user and system, all its threads) over wall time since the previous reading: 1 is one core's worth. */
  cpuUtilization: number;
  /** Connections open now on its DNS listeners, by transport (DNS over TCP, DoT, DoH): how the workers share them. */
  openConnections: OpenConnections;
  /** Its UDP listen sockets and how it reads them: a worker other than the first reads a shared one only while the first falls behind. */
  udp: UdpReading;
}

export interface UdpReading {
  /** Sockets it reads now. */
  reading: number;
  /** Times since start it came back to a shared socket, and left one to the first worker. */
  joins: number;
  leaves: number;
  /** A worker other than the first: the first worker's thread's CPU share as this one last weighed it (0-1; 1 is a core), what it joins a shared socket on; null when not known. */
  firstBusy: number | null;
}

export interface OpenConnections {
  tcp: number;
  dot: number;
  doh: number;
}
