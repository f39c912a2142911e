// Coffer's built-in page: plain DOM, no framework, no build step.
// The token is sent as `Authorization: Bearer` on every fetch, never in a URL; it lives in memory
// and in sessionStorage (it survives a reload, and goes with the tab). Live updates read the
// Server-Sent Events streams with fetch, since EventSource cannot send headers.
// Every value from the API reaches the page through textContent: names may hold anything.

const TOKEN_KEY = 'coffer.token';
/** The API is the folder above the page (/ui/ → /), so a proxy prefix keeps working. */
const API_BASE = new URL('../', location.href);
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/** Browsers open about six connections per host over HTTP/1.1: /events takes one, jobs at most this many. */
const MAX_JOB_STREAMS = 3;
const JOBS_SHOWN = 20;

const state = {
  token: null,
  me: null,
  /** Job views by id; the table shows the newest JOBS_SHOWN. */
  jobs: new Map(),
  /** Job id → AbortController of its open progress stream. */
  jobStreams: new Map(),
  /** Aborts /events and every job stream on sign-out. */
  session: null,
  logCursor: null,
  refreshTimer: null,
};

const $ = (selector) => document.querySelector(selector);

/** An element with properties (textContent, className, …) and children; never HTML from strings. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'onclick') node.addEventListener('click', value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Fetches an API path with the token; answers the JSON body or throws an ApiError with the API's `{code, message}`. */
async function api(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const init = { method, signal, cache: 'no-store', headers: { authorization: `Bearer ${state.token}`, ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path.replace(/^\//, ''), API_BASE), init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', `cannot reach the API (${err.message})`);
  }
  if (response.ok && response.headers.get('content-type')?.startsWith('text/event-stream')) return response;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.code ?? `HTTP_${response.status}`, data?.message ?? response.statusText);
  }
  return data;
}

/**
 * Reads a Server-Sent Events stream: calls `onEvent({event, data, id})` per event until the stream
 * ends (resolves) or fails (rejects). `lastEventId` resumes where a dropped stream stopped; `onOpen`
 * is called once the API has accepted the stream.
 */
async function readEvents(path, { signal, lastEventId, onEvent, onOpen }) {
  const headers = { accept: 'text/event-stream' };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const response = await api(path, { signal, headers });
  onOpen?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { event: 'message', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '') {
        if (event.data.length > 0)
          onEvent({ event: event.event, id: event.id, data: JSON.parse(event.data.join('\n')) });
        event = { event: 'message', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue; // a heartbeat comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event.event = text;
      else if (field === 'data') event.data.push(text);
      else if (field === 'id') event.id = text;
    }
  }
}

// ---------- messages and formatting ----------

function say(text, isError = false) {
  const box = $('#message');
  box.textContent = text;
  box.classList.toggle('error', isError);
  box.hidden = false;
}

function sayError(err) {
  if (err?.name === 'AbortError') return;
  if (err instanceof ApiError) say(`${err.message} (${err.code})`, true);
  else say(String(err?.message ?? err), true);
  if (err instanceof ApiError && err.status === 401 && state.token)
    signOut('Signed out: the token is unknown or revoked.');
}

const shortId = (id) => (id ? id.slice(0, 8) : '');
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function badge(status) {
  return el('span', { className: `badge ${status ?? ''}`, textContent: status ?? 'not verified' });
}

/** Shows what only submitters may use; a viewer gets none of it (the API would refuse it anyway). */
function mayDo(action) {
  const role = state.me?.role;
  if (action === 'submit') return role === 'admin' || role === 'operator';
  return false;
}

function applyRole() {
  for (const node of document.querySelectorAll('[data-needs]')) node.hidden = !mayDo(node.dataset.needs);
}

// ---------- jobs ----------

function progressCell(job) {
  const p = job.progress ?? {};
  const bar = el('progress', { max: Math.max(p.bytesTotal || p.filesTotal || 1, 1) });
  bar.value = p.bytesTotal ? p.bytes : p.filesTotal ? p.files : job.status === 'completed' ? bar.max : 0;
  const parts = [`${p.files ?? 0}/${p.filesTotal ?? 0} files`, `${bytes(p.bytes ?? 0)} of ${bytes(p.bytesTotal ?? 0)}`];
  if (!TERMINAL.has(job.status) && p.bytesPerSecond) parts.push(`${bytes(p.bytesPerSecond)}/s`);
  if (!TERMINAL.has(job.status) && p.etaSeconds !== null && p.etaSeconds !== undefined)
    parts.push(`ETA ${p.etaSeconds} s`);
  const text = el('span', { className: 'progress-text', textContent: parts.join(' · ') });
  const current =
    p.current && !TERMINAL.has(job.status) ? el('span', { className: 'progress-text', textContent: p.current }) : null;
  return el('td', {}, bar, text, current);
}

function whatCell(job) {
  let what = `${job.destination}${job.snapshot ? ` / ${shortId(job.snapshot)}` : ''}`;
  if (job.kind === 'backup') what = `${job.source ?? ''} → ${job.destination}`;
  else if (job.kind === 'restore') what = `${shortId(job.snapshot)} → ${job.target ?? ''}`;
  const cell = el('td', { className: 'wrap' }, el('span', { textContent: what }));
  if (job.error) {
    cell.append(el('div', { className: 'error-text', textContent: `${job.error.code}: ${job.error.message}` }));
  }
  return cell;
}

function renderJobs() {
  const body = $('#jobs tbody');
  const jobs = [...state.jobs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, JOBS_SHOWN);
  body.replaceChildren(
    ...jobs.map((job) => {
      const cancellable = mayDo('submit') && !TERMINAL.has(job.status);
      const cancel = cancellable
        ? el('button', {
            type: 'button',
            className: 'secondary small',
            textContent: 'Cancel',
            onclick: () => cancelJob(job.id),
          })
        : null;
      return el(
        'tr',
        { dataset: { job: job.id, status: job.status } },
        el('td', {}, el('code', { textContent: shortId(job.id), title: job.id })),
        el('td', { textContent: job.kind }),
        el('td', {}, badge(job.status)),
        progressCell(job),
        whatCell(job),
        el('td', { className: 'actions' }, cancel),
      );
    }),
  );
  $('#jobs-empty').hidden = jobs.length > 0;
}

/** Takes a job view in; a job that ended refreshes what it changed (snapshots, log). */
function noteJob(view) {
  const before = state.jobs.get(view.id);
  // Two streams tell the same job: a late transition must not undo an end already shown.
  if (before && TERMINAL.has(before.status) && !TERMINAL.has(view.status)) return;
  state.jobs.set(view.id, { ...before, ...view });
  renderJobs();
  if (TERMINAL.has(view.status) && before?.status !== view.status) scheduleRefresh();
  if (!TERMINAL.has(view.status)) followJob(view.id);
}

function noteProgress(id, progress) {
  const job = state.jobs.get(id);
  if (!job || TERMINAL.has(job.status)) return;
  job.progress = progress;
  // Only the progress cell: rebuilding the row every second would swallow clicks on Cancel.
  const row = [...document.querySelectorAll('#jobs tr[data-job]')].find((each) => each.dataset.job === id);
  row?.children[3].replaceWith(progressCell(job));
}

/** Streams one unfinished job's progress; the stream ends after its terminal transition. */
function followJob(id) {
  if (state.jobStreams.has(id) || state.jobStreams.size >= MAX_JOB_STREAMS || !state.session) return;
  const controller = new AbortController();
  const session = state.session;
  const abort = () => controller.abort();
  session.signal.addEventListener('abort', abort);
  state.jobStreams.set(id, controller);
  readEvents(`/jobs/${encodeURIComponent(id)}/events`, {
    signal: controller.signal,
    onEvent: ({ event, data }) => (event === 'progress' ? noteProgress(id, data) : noteJob(data)),
  })
    .catch((err) => {
      if (err.name !== 'AbortError' && err.status !== 404) console.warn('job stream ended', err);
    })
    .finally(() => {
      session.signal.removeEventListener('abort', abort);
      state.jobStreams.delete(id);
      // A slot is free: follow the next unfinished job (this one again if its stream dropped early),
      // after a pause so an API that refuses streams is not asked in a tight loop.
      setTimeout(() => {
        if (session !== state.session) return;
        for (const job of state.jobs.values()) if (!TERMINAL.has(job.status)) followJob(job.id);
      }, 1000);
    });
}

async function loadJobs() {
  const page = await api(`/jobs?limit=${JOBS_SHOWN}`);
  state.jobs.clear();
  for (const job of page.items) state.jobs.set(job.id, job);
  renderJobs();
  for (const job of page.items) if (!TERMINAL.has(job.status)) followJob(job.id);
}

async function cancelJob(id) {
  try {
    noteJob(await api(`/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' }));
    say(`Cancel requested for job ${shortId(id)}.`);
  } catch (err) {
    sayError(err);
  }
}

/**
 * Follows every transition the token may see over /events; after a drop, reconnects with
 * Last-Event-ID so transitions in between are replayed, not missed.
 */
async function followEvents(session) {
  let lastEventId = null;
  let delay = 1000;
  while (!session.signal.aborted) {
    try {
      await readEvents('/events', {
        signal: session.signal,
        lastEventId,
        onOpen: () => {
          setConnection(true);
          delay = 1000;
        },
        onEvent: ({ event, data, id }) => {
          if (id) lastEventId = id;
          if (event === 'status') noteJob(data);
        },
      });
    } catch (err) {
      if (session.signal.aborted) return;
      if (err.status === 401) return sayError(err);
    }
    setConnection(false);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

function setConnection(live) {
  const badgeNode = $('#connection');
  badgeNode.textContent = live ? 'live' : 'reconnecting…';
  badgeNode.classList.toggle('live', live);
}

// ---------- snapshots ----------

function snapshotRow(snapshot) {
  const verify = snapshot.verify
    ? el('span', {}, badge(snapshot.verify), ` ${when(snapshot.verifiedAt)}`)
    : el('span', { className: 'hint', textContent: 'not verified' });
  const actions = el('td', { className: 'actions', dataset: { needs: 'submit' } });
  if (mayDo('submit')) {
    actions.append(
      el('button', {
        type: 'button',
        className: 'secondary small',
        textContent: 'Restore…',
        onclick: () => prepareRestore(snapshot),
      }),
      el('button', {
        type: 'button',
        className: 'secondary small',
        textContent: 'Verify',
        onclick: () => startVerify(snapshot.id),
      }),
    );
  }
  return el(
    'tr',
    { dataset: { snapshot: snapshot.id } },
    el('td', {}, el('code', { textContent: shortId(snapshot.id), title: snapshot.id })),
    el('td', { textContent: when(snapshot.createdAt) }),
    el('td', { className: 'wrap', textContent: snapshot.source }),
    el('td', { textContent: `${snapshot.files} files, ${bytes(snapshot.bytes)}` }),
    el('td', { className: 'verify' }, verify),
    actions,
  );
}

async function loadSnapshots() {
  const [destinations, snapshots] = await Promise.all([api('/destinations'), api('/snapshots?limit=100')]);
  const byDestination = new Map();
  for (const snapshot of snapshots.items) {
    byDestination.set(snapshot.destination, [...(byDestination.get(snapshot.destination) ?? []), snapshot]);
  }
  const sections = destinations.items.map((destination) => {
    const rows = (byDestination.get(destination.name) ?? []).map(snapshotRow);
    const facts = [
      `${destination.snapshots} snapshot${destination.snapshots === 1 ? '' : 's'}`,
      `last success ${when(destination.lastSuccessAt)}`,
    ];
    if (destination.lastFailureAt) facts.push(`last failure ${when(destination.lastFailureAt)}`);
    const head = el(
      'tr',
      {},
      ...['Snapshot', 'Made', 'Source', 'Size', 'Verify', ''].map((t) => el('th', { textContent: t })),
    );
    return el(
      'div',
      { className: 'destination', dataset: { destination: destination.name } },
      el(
        'h3',
        {},
        el('span', { textContent: destination.name }),
        el('span', { className: 'facts', textContent: facts.join(' · ') }),
      ),
      rows.length > 0 ? el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)) : null,
    );
  });
  $('#destinations').replaceChildren(...sections);
  $('#destinations-empty').hidden = sections.length > 0;
  applyRole();
}

function prepareRestore(snapshot) {
  const form = $('#restore-form');
  form.elements.snapshot.value = snapshot.id;
  form.scrollIntoView({ block: 'nearest' });
  form.elements.target.focus();
}

async function startVerify(snapshotId) {
  try {
    const { id } = await api('/verify', { method: 'POST', body: { snapshot: snapshotId } });
    say(`Verify queued: job ${shortId(id)}.`);
    await addJob(id);
  } catch (err) {
    sayError(err);
  }
}

// ---------- log ----------

/** The filters as query parameters; datetime-local values are local times, the API wants instants. */
function logQuery() {
  const form = $('#log-filters');
  const query = new URLSearchParams({ limit: '50' });
  for (const name of ['status', 'jobId'])
    if (form.elements[name].value) query.set(name, form.elements[name].value.trim());
  for (const name of ['since', 'until']) {
    const value = form.elements[name].value;
    if (value) query.set(name, new Date(value).toISOString());
  }
  if (state.logCursor) query.set('cursor', String(state.logCursor));
  return query;
}

async function loadLog(cursor = null) {
  state.logCursor = cursor;
  const page = await api(`/logs?${logQuery()}`);
  $('#log tbody').replaceChildren(
    ...page.items.map((row) =>
      el(
        'tr',
        {},
        el('td', { textContent: String(row.id) }),
        el('td', { textContent: when(row.date) }),
        el('td', { textContent: row.action }),
        el('td', {}, badge(row.status)),
        el('td', { className: 'wrap', textContent: row.parameter }),
        el('td', {}, el('code', { textContent: shortId(row.jobId), title: row.jobId ?? '' })),
        el('td', { textContent: row.actor ?? '' }),
        el('td', { className: 'wrap', textContent: [row.code, row.message].filter(Boolean).join(': ') }),
      ),
    ),
  );
  const older = $('#log-older');
  older.disabled = page.nextCursor === null;
  older.dataset.cursor = page.nextCursor ?? '';
}

/** Snapshots and the log change when jobs end; several ending together refresh once. */
function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    loadSnapshots().catch(sayError);
    if (!state.logCursor) loadLog().catch(sayError);
  }, 300);
}

// ---------- forms ----------

const lines = (text) =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);

async function addJob(id) {
  noteJob(await api(`/jobs/${encodeURIComponent(id)}`));
}

/** Submits a form's job; the button is disabled meanwhile so a double click queues one job. */
function jobForm(selector, path, bodyOf, what) {
  const form = $(selector);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const { id } = await api(path, { method: 'POST', body: bodyOf(form.elements) });
      say(`${what} queued: job ${shortId(id)}.`);
      await addJob(id);
    } catch (err) {
      sayError(err);
    } finally {
      button.disabled = false;
    }
  });
}

jobForm(
  '#backup-form',
  '/backup',
  (f) => {
    const body = { source: f.source.value.trim(), incremental: f.incremental.checked };
    if (f.destination.value.trim()) body.destination = f.destination.value.trim();
    const exclude = lines(f.exclude.value);
    if (exclude.length > 0) body.exclude = exclude;
    return body;
  },
  'Backup',
);
jobForm(
  '#restore-form',
  '/restore',
  (f) => {
    const body = { snapshot: f.snapshot.value.trim(), target: f.target.value.trim(), overwrite: f.overwrite.checked };
    const paths = lines(f.paths.value);
    if (paths.length > 0) body.paths = paths;
    return body;
  },
  'Restore',
);
jobForm('#verify-form', '/verify', (f) => ({ snapshot: f.snapshot.value.trim() }), 'Verify');

$('#log-filters').addEventListener('submit', (event) => {
  event.preventDefault();
  loadLog().catch(sayError);
});
$('#log-newest').addEventListener('click', () => loadLog().catch(sayError));
$('#log-older').addEventListener('click', (event) => loadLog(Number(event.target.dataset.cursor)).catch(sayError));
$('#jobs-refresh').addEventListener('click', () => loadJobs().catch(sayError));
$('#snapshots-refresh').addEventListener('click', () => loadSnapshots().catch(sayError));

// ---------- session ----------

/** Checks the token with GET /whoami, then shows what its role may use and starts the streams. */
async function signIn(token) {
  state.token = token;
  try {
    state.me = await api('/whoami');
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw err;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.session = new AbortController();
  $('#who').textContent = `${state.me.name} (${state.me.role})`;
  $('#who').hidden = false;
  $('#sign-out').hidden = false;
  $('#sign-in-section').hidden = true;
  $('#app').hidden = false;
  $('#message').hidden = true;
  applyRole();
  void followEvents(state.session);
  await Promise.all([loadJobs(), loadSnapshots(), loadLog()]);
}

function signOut(text = 'Signed out.') {
  state.session?.abort();
  state.session = null;
  state.token = null;
  state.me = null;
  state.jobs.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  for (const selector of ['#jobs tbody', '#destinations', '#log tbody']) $(selector).replaceChildren();
  $('#who').hidden = true;
  $('#sign-out').hidden = true;
  $('#app').hidden = true;
  $('#sign-in-section').hidden = false;
  $('#connection').textContent = 'offline';
  $('#connection').classList.remove('live');
  say(text);
}

$('#sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  input.value = '';
  signIn(token).catch((err) => {
    if (err instanceof ApiError && err.status === 401) say(`Cannot sign in: ${err.message}.`, true);
    else sayError(err);
  });
});
$('#sign-out').addEventListener('click', () => signOut());

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved).catch(sayError);
