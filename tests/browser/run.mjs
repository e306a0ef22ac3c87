// Browser tests of the dashboard: Debian's chromium driven by playwright-core against
// the real binary (TEST_MAILTRAIL_BIN), seeded through the JSON API.
//
// Every scenario runs with JavaScript turned off in the page, which is how we know the
// dashboard works without it. A failing scenario leaves a screenshot in
// tests/browser/test-output/. The last line says `N passed, M failed`; the exit code is
// non-zero when anything failed.

import { mkdirSync } from 'node:fs';
import { axeSweep } from './axe.mjs';
import { ADMIN_PASSWORD, addUser, api, launch, login, startServer } from './helpers.mjs';

const outputDir = new URL('./test-output/', import.meta.url).pathname;
mkdirSync(outputDir, { recursive: true });

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function expectText(page, text) {
  const body = await page.locator('body').innerText();
  assert(body.includes(text), `expected the page (${page.url()}) to say "${text}"; it says:\n${body.slice(0, 1500)}`);
}

async function seed(server) {
  for (const [key, name] of [['IT', 'IT Help'], ['HR', 'People Team'], ['TOG', 'Toggle Desk'], ['OUT', 'Outage Desk']]) {
    const r = await api(server, 'PUT', `/api/v1/projects/${key}`, { name });
    assert(r.status === 200, `creating ${key}: ${JSON.stringify(r.body)}`);
  }
  const adds = [
    ['IT', ['Alice Example <alice@example.com>', 'grace@example.com']],
    ['HR', ['alice@example.com']],
  ];
  for (const [key, emails] of adds) {
    const r = await api(server, 'POST', `/api/v1/projects/${key}/customers`, { emails });
    assert(r.status === 200, `adding to ${key}: ${JSON.stringify(r.body)}`);
  }
  let r = await api(server, 'POST', '/api/v1/suppressions', { email: 'rosa@example.com', note: 'bounced in the old system' });
  assert(r.status === 201, JSON.stringify(r.body));
  r = await api(server, 'POST', '/api/v1/projects/IT/customers', { emails: ['rosa@example.com'] });
  assert(r.status === 200, JSON.stringify(r.body));
  await addUser(server, 'sam', 'support', 'support-password');
  await addUser(server, 'vera', 'viewer', 'viewer-password');
}

const scenarios = [];
function scenario(name, user, body) {
  scenarios.push({ name, user, body });
}

scenario('log in and see the overview', null, async ({ page, base }) => {
  await page.goto(`${base}/why`);
  assert(new URL(page.url()).pathname === '/login', `expected the login page, got ${page.url()}`);
  await page.getByLabel('User name').fill('admin');
  await page.getByLabel('Password').fill('wrong');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expectText(page, 'Wrong user name or password.');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await Promise.all([page.waitForURL(/\/why$/), page.getByRole('button', { name: 'Log in' }).click()]);
  await page.getByRole('link', { name: 'Overview' }).click();
  await expectText(page, 'Bounce rate');
  assert(await page.locator('svg.chart').count() >= 3, 'the overview draws its charts');
});

scenario('look up a suppressed address and unsuppress it with a note', 'admin', async ({ page, base }) => {
  await page.getByRole('link', { name: 'Why no invite?' }).click();
  await page.getByLabel("Customer's email address").fill('rosa@example.com');
  await page.getByRole('button', { name: 'Look up' }).click();
  await expectText(page, 'rosa@example.com is suppressed');
  await expectText(page, 'After this, a resend would: send the email.');
  // rosa was suppressed by hand (an opt-out): the page asks for renewed consent.
  await expectText(page, 'renewed consent');
  // Without the box and a note the form comes back with both errors at once.
  await page.getByRole('button', { name: 'Unsuppress rosa@example.com' }).click();
  await expectText(page, 'A note is required');
  await expectText(page, 'tick the box to confirm');
  assert(await page.locator('#unsuppress-note[aria-invalid="true"]').count() === 1, 'the note field is marked invalid');
  await page.getByLabel('The customer asked for our email again (renewed consent)').check();
  await page.getByLabel('Note (required): how and when did the customer consent?').fill('Customer confirmed the address by phone');
  await page.getByRole('button', { name: 'Unsuppress rosa@example.com' }).click();
  await expectText(page, 'rosa@example.com is no longer suppressed.');
  await expectText(page, 'Not suppressed.');
  await page.getByRole('link', { name: 'Audit' }).click();
  await expectText(page, 'Customer confirmed the address by phone');
});

scenario('look up an existing customer and resend', 'sam', async ({ page, base }) => {
  assert(new URL(page.url()).pathname === '/why', 'support lands on the Why page');
  await page.getByLabel("Customer's email address").fill('alice@example.com');
  await page.getByRole('button', { name: 'Look up' }).click();
  await expectText(page, 'already existed on the site');
  await expectText(page, 'A resend now would: send the email.');
  await page.getByRole('button', { name: 'Resend invitation (HR)' }).click();
  await expectText(page, 'will be sent to alice@example.com again');
  const newest = (await api({ base }, 'GET', '/api/v1/decisions?email=alice%40example.com&limit=1')).body.items[0];
  assert(newest.channel === 'resend' && newest.project === 'HR', `newest decision: ${JSON.stringify(newest)}`);
});

scenario('switch outgoing mail off and on and resend what it skipped', 'admin', async ({ page, base }) => {
  await page.getByRole('link', { name: 'Site' }).click();
  await page.getByRole('button', { name: 'Turn outgoing mail off' }).click();
  // A second step shows the impact; nothing changed yet.
  await expectText(page, 'Turn outgoing mail off for the whole site?');
  assert((await api({ base }, 'GET', '/api/v1/site')).body.outgoing_mail === true, 'off before confirming');
  await page.getByRole('button', { name: 'Yes, turn outgoing mail off' }).click();
  await expectText(page, 'Outgoing mail is off');
  await page.goto(`${base}/projects/OUT`);
  await expectText(page, 'Outgoing mail is off: mailtrail sends no email at all');
  await page.getByLabel('Addresses, one per line (or separated by commas)').fill('hal@example.com\nivy@example.com');
  await page.getByRole('button', { name: 'Add customers' }).click();
  await expectText(page, '0 of the 2 will get an email');
  await page.getByRole('button', { name: 'Yes, add 2 without an email' }).click();
  await expectText(page, 'outgoing_mail_disabled');
  await page.getByRole('link', { name: 'Site' }).click();
  await expectText(page, 'Turn outgoing mail back on first');
  await page.getByRole('button', { name: 'Turn outgoing mail on' }).click();
  await expectText(page, 'Outgoing mail is on');
  await expectText(page, '2 customers got no email because of it.');
  await page.getByRole('button', { name: 'Resend the 2 skipped emails' }).click();
  await expectText(page, 'Queued 2 emails again.');
  const newest = (await api({ base }, 'GET', '/api/v1/decisions?email=ivy%40example.com&limit=1')).body.items[0];
  assert(newest.channel === 'resend' && newest.decision === 'send', `newest decision: ${JSON.stringify(newest)}`);
});

scenario('change a project toggle and see the next decision change', 'admin', async ({ page, base }) => {
  await page.getByRole('link', { name: 'Projects' }).click();
  await page.getByRole('link', { name: 'Toggle Desk' }).click();
  await page.getByRole('button', { name: 'Turn off "Customer invited" notification' }).click();
  await expectText(page, '"Customer invited" notification is now off in Toggle Desk (TOG).');
  await page.getByLabel('Addresses, one per line (or separated by commas)').fill('jon@example.com');
  await page.getByRole('button', { name: 'Add customers' }).click();
  await expectText(page, 'Add 1 customer to Toggle Desk without any email?');
  await page.getByRole('button', { name: 'Yes, add 1 without an email' }).click();
  await expectText(page, 'Results: 0 will get an email, 1 will not');
  await expectText(page, 'invite_notification_disabled');
  await page.getByRole('button', { name: 'Turn on "Customer invited" notification' }).click();
  await expectText(page, 'is now on in Toggle Desk');
  await page.getByLabel('Addresses, one per line (or separated by commas)').fill('kai@example.com');
  await page.getByRole('button', { name: 'Add customers' }).click();
  await expectText(page, 'Results: 1 will get an email, 0 will not');
  await expectText(page, 'kai@example.com is now a customer of Toggle Desk; an invitation will be sent.');
});

scenario('a viewer can do none of it', 'vera', async ({ page, base }) => {
  await page.goto(`${base}/why?email=grace%40example.com`);
  await expectText(page, 'grace@example.com');
  for (const name of [/Resend/, /Unsuppress/, /Turn .* on/]) {
    assert(await page.getByRole('button', { name }).count() === 0, `a viewer sees a ${name} button on the Why page`);
  }
  await page.goto(`${base}/site`);
  assert(await page.getByRole('button', { name: /Turn outgoing mail/ }).count() === 0, 'a viewer sees the outgoing mail switch');
  await page.goto(`${base}/projects/TOG`);
  assert(await page.getByRole('button', { name: /Turn (on|off)/ }).count() === 0, 'a viewer sees toggles');
  assert(await page.getByRole('button', { name: 'Add customers' }).count() === 0, 'a viewer can add customers');
  await page.goto(`${base}/suppressions`);
  assert(await page.getByRole('button', { name: /Suppress|Import|Unsuppress/ }).count() === 0, 'a viewer can change suppressions');
  // A forged POST with the viewer's own session and token is still refused.
  const csrf = await page.locator('input[name="csrf"]').first().getAttribute('value');
  for (const [path, form] of [
    ['/why/resend', { email: 'grace@example.com', project: 'IT' }],
    ['/suppressions/add', { email: 'x@example.com' }],
    ['/site/outgoing-mail', { value: 'off' }],
    ['/projects/TOG/toggle', { setting: 'invite_notification', value: 'off' }],
  ]) {
    const r = await page.request.post(`${base}${path}`, { form: { csrf, ...form }, maxRedirects: 0 });
    assert(r.status() === 403, `viewer POST ${path} answered ${r.status()}`);
    assert((await r.text()).includes('Not allowed for your role'), `viewer POST ${path}: not the 403 page`);
  }
});

scenario('a form posted without its CSRF token is refused', 'admin', async ({ page, base }) => {
  await page.goto(`${base}/why?email=grace%40example.com`);
  const form = page.locator('form:has(input[name="do"][value="resend"])').first();
  // Strip the hidden token from the real form (playwright's own script, not the page's).
  await form.locator('input[name="csrf"]').evaluate((input) => input.remove());
  await form.getByRole('button').click();
  await expectText(page, 'This form has expired');
  const r = await page.request.post(`${base}/site/outgoing-mail`, { form: { value: 'off' }, maxRedirects: 0 });
  assert(r.status() === 403, `a POST without a token answered ${r.status()}`);
  const site = await api({ base }, 'GET', '/api/v1/site');
  assert(site.body.outgoing_mail === true, 'the refused form changed nothing');
});

const passwords = { admin: ADMIN_PASSWORD, sam: 'support-password', vera: 'viewer-password' };
let passed = 0;
let failed = 0;
const server = await startServer();
try {
  await seed(server);
  for (const s of scenarios) {
    // Pages must work without JavaScript: the pages' own scripts are off.
    const browser = await launch({ javaScriptEnabled: false });
    const page = await browser.page();
    const started = Date.now();
    try {
      if (s.user) await login(page, server.base, s.user, passwords[s.user]);
      await s.body({ page, base: server.base });
      passed += 1;
      console.log(`ok   ${s.name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed += 1;
      const file = `${outputDir}${s.name.replace(/[^a-z0-9]+/gi, '-')}.png`;
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.log(`FAIL ${s.name}: ${error.stack ?? error}\n     screenshot: ${file}`);
    } finally {
      await browser.close();
    }
  }
} finally {
  await server.stop();
}
// The accessibility sweep runs on its own --demo server.
{
  const started = Date.now();
  const failures = await axeSweep({ log: () => {} });
  if (failures.length === 0) {
    passed += 1;
    console.log(`ok   axe-core finds no WCAG 2.1 AA violation on any page, any role, desktop and phone (${Date.now() - started} ms)`);
  } else {
    failed += 1;
    console.log(`FAIL axe-core found ${failures.length} violations:\n  ${failures.join('\n  ')}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
