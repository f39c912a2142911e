import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../helpers/environment.js';
import { freePort } from '../helpers/ports.js';
import { describeTree } from '../helpers/trees.js';

// The page at /ui in a real headless Chromium, against the built API and a worker: sign in,
// back up, watch it complete live, restore, verify; then a viewer, a wrong token, and names
// that look like HTML. Each step leaves a screenshot in the test's temp folder (logged below);
// with UPDATE_SCREENSHOT=1, the state after the verify is written to docs/ui.png for the README.

const ROOT = new URL('../..', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const STEP_MS = 20_000;

let env: TestEnvironment;
let baseUrl: string;
let browser: Browser;
/** The test's own folder: screenshots/ (kept as artifacts) and restores/ (RESTORE_ROOTS). */
let artifacts: string;
let shots: string;
let restores: string;
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
const processes: { name: string; child: ChildProcess; output: string[] }[] = [];

function launch(name: string, script: string, extra: Record<string, string>): void {
  const child = spawn(process.execPath, [join(ROOT, script)], {
    env: { PATH: process.env.PATH ?? '', ...env.variables, LOG_LEVEL: 'info', ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  processes.push({ name, child, output });
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(baseUrl + path, {
    ...init,
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
  });
  const body = (await response.json()) as T;
  if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

/** A page in a fresh context (its own sessionStorage), recording every request URL it makes. */
async function openPage(): Promise<{ context: BrowserContext; page: Page; urls: string[]; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const urls: string[] = [];
  const errors: string[] = [];
  page.on('request', (request) => urls.push(request.url()));
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.goto(`${baseUrl}/ui`);
  return { context, page, urls, errors };
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** Submits a job form and answers the id of the job the API queued. */
async function submitJob(page: Page, form: string, path: string): Promise<string> {
  const [response] = await Promise.all([
    page.waitForResponse(
      (response) => response.url() === `${baseUrl}${path}` && response.request().method() === 'POST',
    ),
    page.click(`${form} button[type=submit]`),
  ]);
  expect(response.status(), await response.text()).toBe(202);
  return ((await response.json()) as { id: string }).id;
}

/** Waits, without any reload, until the jobs table shows the job with this status. */
async function jobReaches(page: Page, id: string, status: string): Promise<void> {
  await page.waitForSelector(`#jobs tr[data-job="${id}"][data-status="${status}"]`, { timeout: STEP_MS });
}

/** Each file's type and contents, leaving modes and times aside. */
async function contentsOf(root: string): Promise<Record<string, { type: string; content?: string }>> {
  const tree = await describeTree(root);
  return Object.fromEntries(Object.entries(tree).map(([path, { type, content }]) => [path, { type, content }]));
}

describe.skipIf(!HAS_CHROMIUM)(`the web page at /ui, in headless Chromium (${CHROMIUM})`, () => {
  let admin: Awaited<ReturnType<typeof openPage>>;
  let backupId: string;
  let source: string;

  beforeAll(async () => {
    artifacts = await mkdtemp(join(tmpdir(), 'coffer-ui-'));
    shots = join(artifacts, 'screenshots');
    restores = join(artifacts, 'restores');
    await mkdir(shots);
    await mkdir(restores);
    console.log(`UI test screenshots: ${shots}`);
    env = await createTestEnvironment({ RESTORE_ROOTS: restores });
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    launch('api', 'api/dist/server.js', { PORT: String(port), INSTANCE_NAME: 'api-1', API_ADMIN_TOKEN: adminToken });
    launch('worker', 'worker/dist/main.js', { INSTANCE_NAME: 'worker-1' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    await waitFor(
      async () => ((await fetch(`${baseUrl}/ready`).catch(() => null))?.status === 200 ? true : undefined),
      20_000,
      'the API to be ready',
    );
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
    for (const { child } of processes) if (child.exitCode === null) child.kill('SIGKILL');
    await env?.cleanup();
    // The screenshots stay: they are the test's artifacts.
    if (restores) await rm(restores, { recursive: true, force: true });
  });

  it('serves the page and its files to anyone, under the CSP, and /ui redirects to /ui/', async () => {
    const redirect = await fetch(`${baseUrl}/ui`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('/ui/');
    for (const [file, type] of [
      ['', 'text/html'],
      ['app.js', 'javascript'],
      ['style.css', 'text/css'],
    ]) {
      const response = await fetch(`${baseUrl}/ui/${file}`);
      expect(response.status, file).toBe(200);
      expect(response.headers.get('content-type')).toContain(type);
      expect(response.headers.get('content-security-policy')).toContain("script-src 'self'");
    }
    expect((await fetch(`${baseUrl}/ui/missing.js`)).status).toBe(404);
    // Only /ui and what is under it is public: a neighbouring path is an unknown route, which needs a token.
    expect((await fetch(`${baseUrl}/uix`)).status).toBe(401);
  });

  it('signs in with the admin token without putting it in any URL, and shows the role', async () => {
    admin = await openPage();
    const { page, urls } = admin;
    await shoot(page, '01-sign-in');
    await signIn(page, adminToken);
    await page.waitForSelector('#app:not([hidden])', { timeout: STEP_MS });
    await expect.poll(() => page.textContent('#who')).toBe('admin (admin)');
    await page.waitForSelector('#connection.live', { timeout: STEP_MS });
    await shoot(page, '02-signed-in');

    expect(page.url()).toBe(`${baseUrl}/ui/`);
    expect(urls.length).toBeGreaterThan(3);
    for (const url of urls) expect(url).not.toContain(adminToken);
    expect(await page.evaluate<string>('JSON.stringify(localStorage)')).not.toContain(adminToken);
    expect(await page.evaluate<string>('document.cookie')).toBe('');
  });

  it('starts a backup through the form and sees it complete live, without a reload', async () => {
    const { page } = admin;
    source = join(env.sources, 'projects');
    await mkdir(join(source, 'notes'), { recursive: true });
    await mkdir(join(source, 'node_modules', 'left-pad'), { recursive: true });
    await writeFile(join(source, 'README.md'), '# Projects\n');
    await writeFile(join(source, 'notes', 'ideas.txt'), 'back up before you need to\n');
    await writeFile(join(source, 'notes', 'data.bin'), randomBytes(300_000));
    await writeFile(join(source, 'node_modules', 'left-pad', 'index.js'), 'module.exports = 1;\n');
    let navigations = 0;
    page.on('framenavigated', () => navigations++);

    await page.fill('#backup-form [name=source]', source);
    await page.fill('#backup-form [name=exclude]', 'node_modules/\n*.tmp');
    backupId = await submitJob(page, '#backup-form', '/backup');
    await page.waitForSelector(`#jobs tr[data-job="${backupId}"]`, { timeout: STEP_MS });
    await shoot(page, '03-backup-queued');
    await jobReaches(page, backupId, 'completed');
    await shoot(page, '04-backup-completed');

    expect(navigations).toBe(0);
    const row = page.locator(`#jobs tr[data-job="${backupId}"]`);
    expect(await row.locator('.progress-text').first().textContent()).toBe('3/3 files · 293.0 KiB of 293.0 KiB');
  });

  it('shows the snapshot under its destination, with its last success and verify state', async () => {
    const { page } = admin;
    const snapshot = page.locator(`.destination[data-destination="projects"] tr[data-snapshot="${backupId}"]`);
    await snapshot.waitFor({ timeout: STEP_MS });
    expect(await snapshot.locator('.verify').textContent()).toBe('not verified');
    expect(await page.locator('.destination[data-destination="projects"] .facts').textContent()).toMatch(
      /^1 snapshot · last success \S/,
    );
    await shoot(page, '05-snapshot');
  });

  it('restores the snapshot through its button and form, live, into a restore root, file for file', async () => {
    const { page } = admin;
    await page.click(`tr[data-snapshot="${backupId}"] button:has-text("Restore")`);
    expect(await page.inputValue('#restore-form [name=snapshot]')).toBe(backupId);
    const target = join(restores, 'projects-restored');
    await page.fill('#restore-form [name=target]', target);
    const restoreId = await submitJob(page, '#restore-form', '/restore');
    await jobReaches(page, restoreId, 'completed');
    await shoot(page, '06-restore-completed');

    const expected = await contentsOf(source);
    delete expected['node_modules'];
    delete expected['node_modules/left-pad'];
    delete expected['node_modules/left-pad/index.js'];
    expect(await contentsOf(target)).toEqual(expected);
  });

  it('verifies the snapshot and shows it verified', async () => {
    const { page } = admin;
    const [response] = await Promise.all([
      page.waitForResponse((response) => response.url() === `${baseUrl}/verify`),
      page.click(`tr[data-snapshot="${backupId}"] button:has-text("Verify")`),
    ]);
    const verifyId = ((await response.json()) as { id: string }).id;
    await jobReaches(page, verifyId, 'completed');
    await page.waitForSelector(`tr[data-snapshot="${backupId}"] .verify .badge.ok`, { timeout: STEP_MS });
    await page.waitForSelector('#log tbody tr', { timeout: STEP_MS });
    await shoot(page, '07-verify-completed');
    if (process.env.UPDATE_SCREENSHOT === '1') {
      await page.locator('#message').evaluate((node) => ((node as { hidden: boolean }).hidden = true));
      await page.screenshot({ path: join(shots, 'ui.png') });
      await copyFile(join(shots, 'ui.png'), join(ROOT, 'docs', 'ui.png'));
    }
    expect(admin.errors).toEqual([]);
  });

  it('filters the log by job id and by status', async () => {
    const { page } = admin;
    await page.fill('#log-filters [name=jobId]', backupId);
    await page.click('#log-filters button[type=submit]');
    await expect
      .poll(() => page.locator('#log tbody tr td:nth-child(4)').allTextContents())
      .toEqual(['completed', 'active', 'queued']);
    await page.fill('#log-filters [name=jobId]', '');
    await page.selectOption('#log-filters [name=status]', 'completed');
    await page.click('#log-filters button[type=submit]');
    await expect.poll(() => page.locator('#log tbody tr').count()).toBe(3);
    await shoot(page, '08-log-filtered');
  });

  it('shows names as text: a source named like an HTML tag runs nothing', async () => {
    const { page } = admin;
    const name = '<img src=x onerror=window.__xss=1>';
    const folder = join(env.sources, name);
    await mkdir(folder);
    await writeFile(join(folder, 'a.txt'), 'a');
    await page.fill('#backup-form [name=source]', folder);
    await page.fill('#backup-form [name=destination]', 'odd-names');
    await page.fill('#backup-form [name=exclude]', '');
    const id = await submitJob(page, '#backup-form', '/backup');
    await jobReaches(page, id, 'completed');
    await page.waitForSelector(`tr[data-snapshot="${id}"]`, { timeout: STEP_MS });
    await shoot(page, '09-html-in-names');

    expect(await page.locator(`#jobs tr[data-job="${id}"] td.wrap span`).textContent()).toBe(`${folder} → odd-names`);
    expect(await page.locator(`tr[data-snapshot="${id}"] td.wrap`).textContent()).toBe(folder);
    expect(await page.locator('main img').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();
  });

  it('signs out: the token leaves the tab', async () => {
    const { page, context } = admin;
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in-section:not([hidden])');
    expect(await page.evaluate<string>('JSON.stringify(sessionStorage)')).not.toContain(adminToken);
    expect(await page.locator('#jobs tbody tr').count()).toBe(0);
    await context.close();
  });

  it('gives a viewer no backup, restore, verify or cancel control, but shows it everything', async () => {
    const { token } = await api<{ token: string }>('/tokens', {
      method: 'POST',
      body: JSON.stringify({ name: 'viewer-ui', role: 'viewer' }),
    });
    const { page, context, urls, errors } = await openPage();
    await signIn(page, token);
    await page.waitForSelector('#app:not([hidden])', { timeout: STEP_MS });
    await expect.poll(() => page.textContent('#who')).toBe('viewer-ui (viewer)');
    await page.waitForSelector(`tr[data-snapshot="${backupId}"]`, { timeout: STEP_MS });
    await page.waitForSelector(`#jobs tr[data-job="${backupId}"]`, { timeout: STEP_MS });
    await shoot(page, '10-viewer');

    for (const form of ['#backup-form', '#restore-form', '#verify-form'])
      expect(await page.isVisible(form)).toBe(false);
    for (const label of ['Start backup', 'Start restore', 'Start verify', 'Restore…', 'Verify', 'Cancel']) {
      expect(await page.getByRole('button', { name: label, exact: true }).count(), label).toBe(0);
    }
    for (const url of urls) expect(url).not.toContain(token);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('says a wrong token is refused, and stays usable', async () => {
    const { page, context, errors } = await openPage();
    await signIn(page, 'cfr_not-a-real-token');
    await page.waitForSelector('#message.error', { timeout: STEP_MS });
    expect(await page.textContent('#message')).toBe('Cannot sign in: the token is unknown or revoked.');
    expect(await page.isVisible('#sign-in')).toBe(true);
    expect(await page.isVisible('#app')).toBe(false);
    expect(await page.evaluate<number>('sessionStorage.length')).toBe(0);
    await shoot(page, '11-wrong-token');

    await signIn(page, adminToken);
    await page.waitForSelector('#app:not([hidden])', { timeout: STEP_MS });
    // The browser reports the refused request itself as a console error; nothing else failed.
    expect(errors.filter((error) => !error.includes('401'))).toEqual([]);
    await context.close();
  });
});
