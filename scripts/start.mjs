// `pnpm start`: runs one API and one worker (built already) in the foreground. Each gets the
// terminal itself, so its logs are readable there (pino-pretty on a TTY) and interleave by line.
// Ctrl-C stops both gracefully (the terminal signals them itself, as they share its process
// group), as does a SIGTERM sent here, and the command then ends with 0; if either stops on its
// own, the other is stopped too and the command fails with its code.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const programs = { api: 'api/dist/server.js', worker: 'worker/dist/main.js' };

// Built here rather than by `pnpm build && …` in package.json, which would keep a shell between
// pnpm and this script (the script is `exec node …`): it would die of the Ctrl-C itself, and pnpm
// would report the command as failed.
const build = spawnSync('pnpm', ['build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const children = Object.entries(programs).map(([name, script]) => {
  const child = spawn(process.execPath, [script], { cwd: root, stdio: 'inherit' });
  return {
    name,
    child,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
  };
});

let stopping = false;
let terminated = false;
function stopAll(signal) {
  stopping = true;
  if (terminated) return;
  terminated = true;
  for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}
// A Ctrl-C has reached the children already: signalling them again would cut their shutdown short.
// (A SIGINT sent to this process alone does not reach them; a SIGTERM after it still does.)
process.on('SIGINT', () => {
  stopping = true;
});
process.on('SIGTERM', () => stopAll('SIGTERM'));

const first = await Promise.race(children.map(async ({ name, exited }) => ({ name, ...(await exited) })));
const asked = stopping;
if (!asked) {
  console.error(`coffer: ${first.name} stopped (${first.signal ?? `exit ${first.code}`}); stopping the rest`);
  stopAll('SIGTERM');
}
const outcomes = await Promise.all(children.map(({ exited }) => exited));
process.exitCode = asked && outcomes.every(({ code }) => code === 0) ? 0 : first.code || 1;
