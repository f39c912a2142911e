import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import type { ApiClient } from './api-client.js';
import { formatBytes, formatPace, formatProgress } from './format.js';
import { TERMINAL_STATUSES, type JobView } from './views.js';

/** How often `--wait` asks for the job's view. */
export const POLL_INTERVAL_MS = 500;
/** Without a terminal, at most one progress line per this many ms. */
const LINE_INTERVAL_MS = 1000;

export interface ProgressReporter {
  update(view: JobView): void;
  stop(): void;
}

/** A redrawn bar on a terminal: bytes against bytesTotal, with the file count. */
function barReporter(stream: NodeJS.WriteStream): ProgressReporter {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: '{status} [{bar}] {percentage}% | {files} files | {bytesText}{pace}',
      emptyOnZero: true,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(view) {
      const { progress } = view;
      const payload = {
        status: view.status.padEnd(9),
        files: progress.filesTotal > 0 ? `${progress.files}/${progress.filesTotal}` : String(progress.files),
        bytesText:
          progress.bytesTotal > 0
            ? `${formatBytes(progress.bytes)}/${formatBytes(progress.bytesTotal)}`
            : formatBytes(progress.bytes),
        pace: formatPace(progress).replace(/^, /, ' | '),
      };
      if (!started) {
        bar.start(progress.bytesTotal, progress.bytes, payload);
        started = true;
      } else {
        bar.setTotal(progress.bytesTotal);
        bar.update(progress.bytes, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Plain lines for logs and pipes: only when something changed, at most one a second. */
export function lineReporter(stream: { write(text: string): unknown }, now: () => number): ProgressReporter {
  let lastLine = '';
  let lastAt = -Infinity;
  return {
    update(view) {
      const line = `${view.kind} job ${view.id} ${view.status}: ${formatProgress(view.progress)}`;
      if (line === lastLine || now() - lastAt < LINE_INTERVAL_MS) return;
      stream.write(`${line}\n`);
      lastLine = line;
      lastAt = now();
    },
    stop() {},
  };
}

/** Polls `GET /jobs/:id` until the job ends, reporting its progress on `stream`; resolves with the final view. */
export async function waitForJob(client: ApiClient, id: string, stream: NodeJS.WriteStream): Promise<JobView> {
  const reporter = stream.isTTY ? barReporter(stream) : lineReporter(stream, () => Date.now());
  try {
    for (;;) {
      const view = await client.request<JobView>('GET', `/jobs/${encodeURIComponent(id)}`);
      if (TERMINAL_STATUSES.includes(view.status)) return view;
      reporter.update(view);
      await sleep(POLL_INTERVAL_MS);
    }
  } finally {
    reporter.stop();
  }
}
