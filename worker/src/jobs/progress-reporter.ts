import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { JobProgress } from '@coffer/shared';

/** Progress is written to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;
/** Throughput is the bytes moved over about this long, so a pause or a burst shows within seconds. */
const RATE_WINDOW_MS = 5_000;

/** What a job's engine tells: counts, totals and the entry in flight, without the derived rate and ETA. */
export type EngineProgress = Omit<JobProgress, 'bytesPerSecond' | 'etaSeconds'>;

export interface ProgressReporter {
  /** Running counts, and the entry in flight when the engine tells it; written when the last write is old enough. */
  advanced(files: number, bytes: number, current?: string | null): void;
  /** Totals, once known; written at once. */
  measured(filesTotal: number, bytesTotal: number): void;
  /** Counts and totals together (a kind that knows its totals up front); throttled like `advanced`. */
  report(progress: EngineProgress): void;
}

export interface ProgressReporterOptions {
  /** Milliseconds of a monotonic clock. Default: `performance.now`. */
  now?: () => number;
}

/**
 * Writes a job's progress to the queue, throttled, whichever kind the job is, with its recent
 * throughput (`bytesPerSecond`) and what is left at that pace (`etaSeconds`). A write that would
 * leave the job's progress as the last one did is skipped.
 */
export function createProgressReporter(
  job: Pick<Job, 'updateProgress'>,
  logger: Logger,
  options: ProgressReporterOptions = {},
): ProgressReporter {
  const now = options.now ?? (() => performance.now());
  const progress: Required<JobProgress> = {
    files: 0,
    filesTotal: 0,
    bytes: 0,
    bytesTotal: 0,
    bytesPerSecond: 0,
    etaSeconds: null,
    current: null,
  };
  const throughput = new Throughput(RATE_WINDOW_MS);
  let lastSent: number | undefined;
  // What the last write held: a write that would change nothing (a stalled job, totals told
  // twice) is a round trip to Redis for nothing.
  let written: Required<JobProgress> | undefined;
  const send = () => {
    const at = now();
    lastSent = at;
    progress.bytesPerSecond = throughput.sample(at, progress.bytes);
    progress.etaSeconds = etaSeconds(progress);
    if (written !== undefined && sameProgress(written, progress)) return;
    written = { ...progress };
    job.updateProgress({ ...progress }).catch((err: unknown) => logger.warn({ err }, 'cannot update progress'));
  };
  const sendIfDue = () => {
    if (lastSent === undefined || now() - lastSent >= PROGRESS_INTERVAL_MS) send();
  };
  return {
    advanced(files, bytes, current) {
      progress.files = files;
      progress.bytes = bytes;
      if (current !== undefined) progress.current = current;
      sendIfDue();
    },
    measured(filesTotal, bytesTotal) {
      progress.filesTotal = filesTotal;
      progress.bytesTotal = bytesTotal;
      send();
    },
    report({ files, filesTotal, bytes, bytesTotal, current }) {
      Object.assign(progress, { files, filesTotal, bytes, bytesTotal });
      if (current !== undefined) progress.current = current;
      sendIfDue();
    },
  };
}

function sameProgress(a: Required<JobProgress>, b: Required<JobProgress>): boolean {
  return (
    a.files === b.files &&
    a.filesTotal === b.filesTotal &&
    a.bytes === b.bytes &&
    a.bytesTotal === b.bytesTotal &&
    a.bytesPerSecond === b.bytesPerSecond &&
    a.etaSeconds === b.etaSeconds &&
    a.current === b.current
  );
}

/** Seconds left at the recent pace: null until the totals are known and bytes are moving. */
export function etaSeconds({
  bytes,
  bytesTotal,
  bytesPerSecond = 0,
}: Pick<JobProgress, 'bytes' | 'bytesTotal' | 'bytesPerSecond'>): number | null {
  if (bytesTotal <= 0 || bytesPerSecond <= 0) return null;
  return Math.ceil(Math.max(0, bytesTotal - bytes) / bytesPerSecond);
}

/**
 * Bytes per second over a sliding window: the bytes moved between the oldest sample still in the
 * window and the newest, over the time between them. Samples are taken at the throttled writes,
 * so the window holds a few dozen at most.
 */
export class Throughput {
  readonly #windowMs: number;
  readonly #samples: Array<{ at: number; bytes: number }> = [];

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** Records `bytes` done at `at` (ms) and answers the rate, an integer; 0 until two samples span some time. */
  sample(at: number, bytes: number): number {
    const samples = this.#samples;
    const last = samples[samples.length - 1];
    // Counts that went back (a copy started over) make the old samples meaningless.
    if (last !== undefined && (bytes < last.bytes || at < last.at)) samples.length = 0;
    samples.push({ at, bytes });
    // The newest sample at or before the window's start is kept, so the window is always covered.
    while (samples.length > 2 && (samples[1]?.at ?? at) <= at - this.#windowMs) samples.shift();
    const first = samples[0];
    if (first === undefined || at <= first.at) return 0;
    return Math.round(((bytes - first.bytes) * 1000) / (at - first.at));
  }
}
