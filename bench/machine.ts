import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

function firstLine(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? (result.stdout.split('\n')[0] ?? '').trim() : 'unavailable';
}

/** The file system type and mount options of the mount holding `dir`. */
function mountOf(dir: string): string {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length >= 4 && dir.startsWith(fields[1] ?? '\0'))
    .sort((a, b) => (b[1]?.length ?? 0) - (a[1]?.length ?? 0));
  const [device, mountPoint, type, options] = mounts[0] ?? [];
  return `${type ?? '?'} on ${device ?? '?'} at ${mountPoint ?? '?'} (${options ?? ''})`;
}

export interface MachineDescription {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  fileSystem: string;
  cp: string;
  rsync: string;
  loadAverageAtStart: number[];
  method: string;
}

export function describeMachine(benchDir: string): MachineDescription {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    fileSystem: mountOf(benchDir),
    cp: firstLine('cp', ['--version']),
    rsync: firstLine('rsync', ['--version']),
    loadAverageAtStart: os.loadavg().map((load) => Number(load.toFixed(2))),
    method:
      'warm page cache (one untimed run of each side first); `sync` before every timed copy; ' +
      'Coffer and its baseline interleaved in rotating order; medians; ratio = median of the ' +
      'per-round Coffer/baseline ratios (ratioOfMedians beside it)',
  };
}

/** The benchmark needs rsync as a baseline; it comes from Debian when missing. */
export function ensureRsync(): void {
  if (spawnSync('rsync', ['--version']).status === 0) return;
  console.log('installing rsync (apt-get)…');
  let install = spawnSync('apt-get', ['install', '-y', 'rsync'], { stdio: 'inherit' });
  if (install.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    install = spawnSync('apt-get', ['install', '-y', 'rsync'], { stdio: 'inherit' });
  }
  if (install.status !== 0) throw new Error('rsync is missing and could not be installed');
}

const PROBE_FILES = 500;
// Creating an empty file costs 15–150 µs here depending on where ext4 places it; right after a
// large delete (ours or another program's) it takes 200 µs and more for a minute or two.
const SETTLED_US_PER_FILE = 150;

export interface SettleRecord {
  probes: number;
  waitedMs: number;
  worstUsPerFile: number;
}

/**
 * Returns a function that waits until creating files costs what it normally does (or
 * `limitMs` passed), so the benchmark does not start in the wake of a large delete. Each
 * probe creates 500 empty files in `scratch`; they are removed with the outputs, at the end.
 */
export function fileSystemSettler(scratch: string): {
  settle: (limitMs?: number) => Promise<void>;
  record: SettleRecord;
} {
  const record: SettleRecord = { probes: 0, waitedMs: 0, worstUsPerFile: 0 };
  const settle = async (limitMs = 60_000) => {
    const started = performance.now();
    for (let attempt = 0; ; attempt += 1) {
      const dir = join(scratch, `probe-${(record.probes += 1)}`);
      mkdirSync(dir, { recursive: true });
      const t = performance.now();
      for (let i = 0; i < PROBE_FILES; i += 1) writeFileSync(join(dir, String(i)), '');
      const usPerFile = ((performance.now() - t) * 1000) / PROBE_FILES;
      const waited = performance.now() - started;
      if (usPerFile <= SETTLED_US_PER_FILE || waited > limitMs) {
        record.waitedMs += Math.round(waited);
        record.worstUsPerFile = Math.max(record.worstUsPerFile, Math.round(usPerFile));
        return;
      }
      if (attempt % 5 === 0) {
        console.log(`  file system busy (${usPerFile.toFixed(0)} µs per file created); waiting…`);
      }
      await sleep(2000);
    }
  };
  return { settle, record };
}
