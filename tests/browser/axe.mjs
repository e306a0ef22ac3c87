// The accessibility sweep (SPEC §15): axe-core, an independent checker, runs on every
// dashboard page as admin, support and viewer, at desktop (1280 px) and phone (390 px)
// width, against a `mailtrail serve --demo`, and must find no WCAG 2.1 A/AA violation;
// no page may be wider than the screen.
//
//   node tests/browser/axe.mjs          (TEST_MAILTRAIL_BIN / CHROMIUM as for run.mjs)
//
// run.mjs runs it too, so `./scripts/test.sh` covers it. axe is evaluated through the
// browser's debugging protocol, so the pages' Content-Security-Policy stays as served.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { launch, login, startServer } from './helpers.mjs';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const sizes = [
  { name: 'desktop', width: 1280, height: 900 },
  { name: 'phone', width: 390, height: 844 },
];

const rolePages = [
  '/',
  '/?window=30d',
  '/why',
  '/why?email=rosa%40example.com',
  '/why?email=alice%40example.com',
  '/why?email=grace%40example.com',
  '/why?email=nobody%40example.com',
  '/outbox',
  '/outbox?status=skipped',
  '/outbox?since=yesterday',
  'decision',
  '/suppressions',
  '/projects',
  '/projects/HR',
  '/site',
  '/audit',
  '/webhooks',
  '/no/such/page',
];

/** The violations axe finds on the page now, as readable lines. */
async function violations(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  return result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}\n      ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n      ')}`,
  );
}

/** Runs the sweep; returns the list of failures (empty when clean). */
export async function axeSweep({ log = console.log } = {}) {
  const failures = [];
  const server = await startServer({ demo: true });
  try {
    for (const size of sizes) {
      // The login page, as nobody.
      const anonymous = await launch({ width: size.width, height: size.height });
      try {
        const page = await anonymous.page();
        await page.goto(`${server.base}/login`);
        for (const v of await violations(page)) failures.push(`${size.name} anonymous /login: ${v}`);
      } finally {
        await anonymous.close();
      }
      for (const role of ['admin', 'support', 'viewer']) {
        const browser = await launch({ width: size.width, height: size.height });
        try {
          const page = await browser.page();
          await login(page, server.base, role, 'demo');
          for (const path of rolePages) {
            if (path === 'decision') {
              await page.goto(`${server.base}/outbox?status=sent`);
              await Promise.all([page.waitForURL(/\/decisions\//), page.locator('tbody tr td a').first().click()]);
            } else {
              await page.goto(server.base + path);
            }
            const found = await violations(page);
            // Nothing widens the page beyond the screen (tables are cards on a phone).
            const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
            if (scroll > inner) found.push(`the page is ${scroll} px wide on a ${inner} px screen`);
            for (const v of found) failures.push(`${size.name} ${role} ${path}: ${v}`);
            log(`${found.length === 0 ? 'ok  ' : 'FAIL'} axe ${size.name} ${role} ${path}`);
          }
          if (role === 'admin') {
            // A confirmation step and a form shown again with its errors.
            await page.goto(`${server.base}/site`);
            await page.getByRole('button', { name: 'Turn outgoing mail off' }).click();
            for (const v of await violations(page)) failures.push(`${size.name} admin confirm outgoing mail off: ${v}`);
            await page.goto(`${server.base}/suppressions`);
            await page.getByRole('button', { name: 'Count the matches…' }).click();
            for (const v of await violations(page)) failures.push(`${size.name} admin bulk form with errors: ${v}`);
            log(`ok   axe ${size.name} admin confirmation and error summary pages checked`);
          }
        } finally {
          await browser.close();
        }
      }
    }
  } finally {
    await server.stop();
  }
  return failures;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const failures = await axeSweep();
  for (const f of failures) console.log(`  ${f}`);
  console.log(`${failures.length} violations`);
  process.exit(failures.length === 0 ? 0 : 1);
}
