// The shapes of the API's answers the CLI reads (the HTTP contract in README.md);
// fields it only passes through to --json are left out.

export interface JobProgress {
  files: number;
  filesTotal: number;
  bytes: number;
  bytesTotal: number;
  bytesPerSecond?: number;
  etaSeconds?: number | null;
  current?: string | null;
}

export interface JobView {
  id: string;
  kind: string;
  status: string;
  source?: string;
  destination: string;
  snapshot?: string;
  target?: string;
  attempts: number;
  progress: JobProgress;
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  actor: string | null;
  schedule: string | null;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface LogRow {
  id: number;
  date: string;
  action: string;
  parameter: string;
  status: string;
  jobId: string | null;
  worker?: string | null;
  code?: string | null;
  message?: string | null;
}

export interface SnapshotView {
  id: string;
  destination: string;
  source: string;
  path: string;
  createdAt: string;
  files: number;
  bytes: number;
  verify: string | null;
  deletedAt: string | null;
}

export interface ScheduleView {
  name: string;
  cron: string;
  timezone: string;
  backup: { source: string; destination?: string; incremental?: boolean; exclude?: string[] };
  actor: string | null;
  createdAt: string;
  nextRunAt: string | null;
  lastJobId: string | null;
  lastStatus: string | null;
}

export interface Accepted {
  id: string;
  status: string;
}

export const TERMINAL_STATUSES: readonly string[] = ['completed', 'failed', 'cancelled'];
