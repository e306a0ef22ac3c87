// Writes a screenshot of every dashboard page at desktop (1280 px) and phone (390 px)
// width into docs/screenshots/, from a `mailtrail serve --demo` started here.
//
//   node tests/browser/screenshots.mjs        (TEST_MAILTRAIL_BIN / CHROMIUM as for run.mjs)
//
// Shots are viewport-height crops (PNG), so the files stay small; the decision page
// has a second shot of its rendered email.

import { mkdirSync } from 'node:fs';
import { api, launch, login, startServer } from './helpers.mjs';

const out = new URL('../../docs/screenshots/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });

const sizes = [
  { name: 'desktop', width: 1280, height: 900 },
  { name: 'phone', width: 390, height: 844 },
];

// [file name, path, who is logged in (null: nobody), extra shot of one section]
const pages = [
  ['login', '/login', null],
  ['overview', '/', 'admin'],
  ['why-suppressed', '/why?email=rosa%40example.com', 'admin'],
  ['why-existing-customer', '/why?email=alice%40example.com', 'support'],
  ['outbox', '/outbox', 'admin'],
  ['decision', null, 'admin', ['decision-email', 'section:has(#mail-h)']],
  ['suppressions', '/suppressions', 'admin'],
  ['projects', '/projects', 'admin'],
  ['project', '/projects/HR', 'admin'],
  ['site', '/site', 'admin'],
  ['audit', '/audit', 'admin'],
  ['why-viewer', '/why?email=grace%40example.com', 'viewer'],
  ['webhooks', 'webhooks', 'admin'],
];
// `SHOTS=webhooks,site node tests/browser/screenshots.mjs` takes only those.
const only = process.env.SHOTS ? process.env.SHOTS.split(',') : null;

/** Lets layout settle (fonts, focus scrolling) before a shot. */
async function page_ready(page) {
  await page.waitForLoadState('load');
  await page.waitForTimeout(150);
}

const server = await startServer({ demo: true });
// Webhook subscriptions for the webhooks page: one whose receiver is down, so its
// delivery log has tries to show.
await api(server, 'POST', '/api/v1/webhooks', { url: 'https://hooks.example.com/mailtrail', events: ['*'], description: 'Ops chat' });
const down = await api(server, 'POST', '/api/v1/webhooks', { url: 'http://127.0.0.1:9/incidents', events: ['message.bounced', 'address.suppressed', 'bounce_rate.crossed'], description: 'Incident desk (down)' });
await api(server, 'POST', '/api/v1/suppressions', { email: 'webhook-demo@example.com', note: 'screenshot' });
await new Promise((r) => setTimeout(r, 1500));
const webhooksPath = `/webhooks?log=${encodeURIComponent(down.body.id)}`;
try {
  for (const size of sizes) {
    const browsers = {};
    try {
      for (const [name, rawPath, who, section = null] of pages) {
        if (only && !only.includes(name)) continue;
        const path = rawPath === 'webhooks' ? webhooksPath : rawPath;
        const key = who ?? 'anonymous';
        if (!browsers[key]) {
          browsers[key] = await launch({ width: size.width, height: size.height });
          if (who) await login(await browsers[key].page(), server.base, who, 'demo');
        }
        const page = await browsers[key].page();
        if (path) {
          await page.goto(server.base + path);
        } else {
          // The decision page of the first sent invitation (multipart: text and HTML).
          await page.goto(`${server.base}/outbox?status=sent&project=IT`);
          await Promise.all([page.waitForURL(/\/decisions\//), page.locator('tbody tr td a').first().click()]);
        }
        const file = `${out}${name}-${size.name}.png`;
        await page.screenshot({ path: file });
        console.log(`wrote ${file}`);
        if (section) {
          // An element shot (a whole-page shot leaves the email's sandboxed frame unpainted).
          const [sectionName, selector] = section;
          const sectionFile = `${out}${sectionName}-${size.name}.png`;
          await page.locator(selector).scrollIntoViewIfNeeded();
          await page.waitForTimeout(300);
          await page.locator(selector).screenshot({ path: sectionFile });
          console.log(`wrote ${sectionFile}`);
        }
      }
      // Pages that follow a form: a confirmation step, a form with its errors, and
      // the result of adding customers (after its redirect).
      const admin = await browsers.admin.page();
      const shot = async (name) => {
        const file = `${out}${name}-${size.name}.png`;
        await page_ready(admin);
        await admin.screenshot({ path: file });
        console.log(`wrote ${file}`);
      };
      await admin.goto(`${server.base}/site`);
      await admin.getByRole('button', { name: 'Turn outgoing mail off' }).click();
      await shot('confirm-outgoing-mail-off');
      await admin.goto(`${server.base}/projects/PORTAL`);
      await admin.getByLabel('Name').fill('');
      await admin.getByLabel('Allow patterns (whitelist), one regular expression per line').fill('(unclosed');
      await admin.getByLabel('Send registration emails also to').fill('copy@example.com');
      await admin.getByRole('button', { name: 'Save settings' }).click();
      await shot('project-settings-errors');
      await admin.goto(`${server.base}/projects/IT`);
      await admin.getByLabel('Addresses, one per line (or separated by commas)').fill(
        `new-${size.name}@example.com\nNina Long-Surname <nina.longsurname-${size.name}@subdomain.example.org>\nnot an address`);
      await admin.getByRole('button', { name: 'Add customers' }).click();
      await shot('project-customers-added');
    } finally {
      for (const b of Object.values(browsers)) await b.close();
    }
  }
} finally {
  await server.stop();
}
