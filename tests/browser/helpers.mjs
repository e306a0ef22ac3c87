// Helpers for the browser tests and the screenshot script: start the real mailtrail
// binary in a temp dir, talk to its JSON API, run its CLI, and drive Debian's chromium
// through playwright-core (no browser is ever downloaded).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const ADMIN_TOKEN = 'browser-test-admin-token';
export const ADMIN_PASSWORD = 'browser-test-admin-password';

/** The binary under test: TEST_MAILTRAIL_BIN, else the debug build of this checkout. */
export function binary() {
  return process.env.TEST_MAILTRAIL_BIN ?? new URL('../../target/debug/mailtrail', import.meta.url).pathname;
}

/**
 * Starts `mailtrail serve` on 127.0.0.1:0 in a fresh temp dir and resolves once it
 * printed `mailtrail: listening on http://…`. `demo` adds `--demo`; `env` adds settings.
 */
export async function startServer({ demo = false, env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mailtrail-browser-'));
  const serverEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAILTRAIL_'))),
    MAILTRAIL_LISTEN: '127.0.0.1:0',
    MAILTRAIL_DB: join(dir, 'mailtrail.db'),
    MAILTRAIL_ADMIN_TOKEN: ADMIN_TOKEN,
    MAILTRAIL_POLL_INTERVAL: '100ms',
    RUST_LOG: 'warn',
    ...(demo ? {} : { MAILTRAIL_ADMIN_PASSWORD: ADMIN_PASSWORD }),
    ...env,
  };
  const child = spawn(binary(), ['serve', ...(demo ? ['--demo'] : [])], { cwd: dir, env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mailtrail did not start in 30 s:\n${stderr}`)), 30_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = line.match(/^mailtrail: listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mailtrail exited (${code}) before listening:\n${stderr}`));
    });
  });
  return {
    base,
    dir,
    env: serverEnv,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => {
          const t = setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 10_000);
          child.on('exit', () => { clearTimeout(t); resolve(); });
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs the binary once as a CLI command against the server's database. */
export function cli(server, args, stdin = '') {
  return new Promise((resolve, reject) => {
    const child = spawn(binary(), args, { cwd: server.dir, env: server.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { err += c; });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`mailtrail ${args.join(' ')} exited ${code}: ${err}`))));
    child.stdin.end(stdin);
  });
}

/** Creates a dashboard user with `mailtrail user add`. */
export async function addUser(server, name, role, password) {
  await cli(server, ['user', 'add', name, '--role', role], `${password}\n`);
}

/** A JSON API call with the admin token; resolves to { status, body }. */
export async function api(server, method, path, body) {
  const response = await fetch(server.base + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, body: json ?? text };
}

/**
 * Launches headless chromium with a fresh profile; `close()` removes the profile.
 * `javaScriptEnabled: false` turns the pages' scripts off (playwright still drives them).
 */
export async function launch({ width = 1280, height = 900, javaScriptEnabled = true } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/lib/chromium/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width, height },
    javaScriptEnabled,
  });
  return {
    context,
    async page() {
      return context.pages()[0] ?? context.newPage();
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Logs in through the form and waits for the landing page. */
export async function login(page, base, username, password) {
  await page.goto(`${base}/login`);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith('/login')), page.getByRole('button', { name: 'Log in' }).click()]);
}
