// Browser tests of the dashboard: Debian's chromium driven by playwright-core against
// the real binary (TEST_MAILTRAIL_BIN), seeded through the JSON API.
//
// Every scenario runs with JavaScript turned off in the page, which is how we know the
// dashboard works without it. A failing scenario leaves a screenshot in
// tests/browser/test-output/. The last line says `N passed, M failed`; the exit code is
// non-zero when anything failed.

import { mkdirSync } from 'node:fs';
import { axeSweep } from './axe.mjs';
import { ADMIN_PASSWORD, ADMIN_TOKEN, addUser, api, launch, login, startServer } from './helpers.mjs';

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
// A scenario on its own fresh `serve --demo` (users admin, support, viewer; password demo).
function demoScenario(name, user, body) {
  scenarios.push({ name, user, body, demo: true });
}

/** The id of the element that has focus (the flash or error summary after a submit). */
async function focused(page) {
  return page.evaluate(() => document.activeElement?.id ?? '');
}

/** Every suppression, through the API. */
async function allSuppressions(server) {
  const r = await api(server, 'GET', '/api/v1/suppressions?limit=500');
  assert(r.status === 200, JSON.stringify(r.body));
  return r.body.items;
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
  // The error page keeps the navigation, and its link goes back to the form's page.
  assert(await page.getByRole('navigation', { name: 'Main' }).count() === 1, 'the expired-form page has no navigation');
  const again = await page.getByRole('link', { name: "Open the form's page again" }).getAttribute('href');
  assert(again === '/why?email=grace%40example.com', `the link goes to ${again}`);
  const r = await page.request.post(`${base}/site/outgoing-mail`, { form: { value: 'off' }, maxRedirects: 0 });
  assert(r.status() === 403, `a POST without a token answered ${r.status()}`);
  const site = await api({ base }, 'GET', '/api/v1/site');
  assert(site.body.outgoing_mail === true, 'the refused form changed nothing');
});


// Finding 1: an incident's button removes exactly its members, after a confirmation
// that shows the count, and the page keeps its address.
demoScenario('an incident on a fresh demo removes exactly its members after a confirmation', 'admin', async ({ page, base }) => {
  const server = { base };
  // Two more bounces of one cause (5.1.1 at example.com) make an incident of several.
  for (const email of ['alice@example.com', 'bob@example.com']) {
    const report = [
      'From: MAILER-DAEMON@mx.example.com', 'To: bounces@acme.example', 'Subject: Undelivered Mail Returned to Sender',
      'MIME-Version: 1.0', 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"', '',
      '--B', 'Content-Type: text/plain', '', 'Undeliverable.', '',
      '--B', 'Content-Type: message/delivery-status', '', 'Reporting-MTA: dns; mx.example.com', '',
      `Final-Recipient: rfc822; ${email}`, 'Action: failed', 'Status: 5.1.1', 'Remote-MTA: dns; mx.example.com',
      'Diagnostic-Code: smtp; 550 5.1.1 user unknown', '', '--B--', '',
    ].join('\r\n');
    const r = await fetch(`${base}/api/v1/bounces`, {
      method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'message/rfc822' }, body: report,
    });
    assert(r.status < 300, `bounce report for ${email}: ${r.status} ${await r.text()}`);
  }
  const before = await allSuppressions(server);
  const incidents = (await api(server, 'GET', '/api/v1/suppressions/incidents?window=30d')).body.items;
  assert(incidents.length > 0, 'the demo has an incident');
  const incident = incidents.find((i) => i.count > 1);
  assert(incident, `no incident of several: ${JSON.stringify(incidents)}`);
  await page.goto(`${base}/?window=30d`);
  await expectText(page, `${incident.count} addresses suppressed`);
  await page.getByText(`Undo this incident: unsuppress all ${incident.count}`).first().click();
  await page.getByLabel('Note (required)').first().fill("the relay's bad hour");
  await page.getByRole('button', { name: `Unsuppress ${incident.count} addresses` }).first().click();
  await expectText(page, `Unsuppress ${incident.count} addresses?`);
  assert(new URL(page.url()).pathname === '/', `the confirmation stays on the overview: ${page.url()}`);
  assert((await allSuppressions(server)).length === before.length, 'nothing removed before confirming');
  await page.getByRole('button', { name: `Yes, unsuppress ${incident.count} addresses` }).click();
  await expectText(page, `Unsuppressed ${incident.count} addresses`);
  assert(await focused(page) === 'flash', 'the flash takes focus after the post');
  const after = await allSuppressions(server);
  assert(after.length === before.length - incident.count, `removed ${before.length - after.length}, the incident had ${incident.count}`);
  for (const id of incident.ids) assert(!after.some((s) => s.email === id), `${id} is still suppressed`);
  for (const reason of ['complaint', 'manual']) {
    const n = (list) => list.filter((s) => s.reason === reason).length;
    assert(n(after) === n(before), `a ${reason} suppression was removed`);
  }
});

// Findings 2 and 3: consent for complaints, the fix that works is the one primary
// button, and support is not sent to a page it cannot use.
demoScenario('a complaint asks for consent and only the fix that works is primary', 'admin', async ({ page, base }) => {
  await page.goto(`${base}/why?email=victor%40example.com`);
  await expectText(page, 'marked our email to victor@example.com as spam');
  await expectText(page, 'renewed consent');
  const body = await page.locator('body').innerText();
  assert(!body.includes('Customer confirmed the address by phone'), 'no suggestion that the address be checked');
  const unsuppress = page.getByRole('button', { name: 'Unsuppress victor@example.com' });
  assert(!(await unsuppress.getAttribute('class'))?.includes('secondary'), 'unsuppress (will work) is the primary button');
  const resend = page.getByRole('button', { name: /^Resend invitation \(/ }).first();
  assert((await resend.getAttribute('class'))?.includes('secondary'), 'resend (not enough alone) is not primary');
  assert(await page.locator('#fix-it button:not(.secondary)').count() === 1, 'exactly one primary button among the fixes');
});

demoScenario('support is never sent to a page its role cannot use', 'support', async ({ page, base }) => {
  await page.goto(`${base}/why?email=nobody%40example.com`);
  await expectText(page, 'ask an admin');
  assert(await page.getByRole('link', { name: "project's page" }).count() === 0, 'support is sent to the project page');
  await page.goto(`${base}/why?email=dave%40example.com`);
  assert(await page.getByRole('button', { name: /Turn it on/ }).count() === 0, 'support sees an admin button');
  await expectText(page, 'Needs the admin role');
});

// Finding 4: a project toggle from the why page asks first, and shows the impact.
demoScenario('a project toggle from the why page asks first', 'admin', async ({ page, base }) => {
  await page.goto(`${base}/why?email=dave%40example.com`);
  await page.getByRole('button', { name: 'Turn it on in HR' }).click();
  await expectText(page, 'for all of People Team (HR)?');
  await expectText(page, 'Nothing has changed yet.');
  assert(new URL(page.url()).pathname === '/why', `the confirmation stays on the why page: ${page.url()}`);
  assert((await api({ base }, 'GET', '/api/v1/projects/HR')).body.invite_notification === false, 'unchanged before confirming');
  await page.getByRole('link', { name: 'Cancel, change nothing' }).click();
  await expectText(page, 'dave@example.com');
  await page.getByRole('button', { name: 'Turn it on in HR' }).click();
  await page.getByRole('button', { name: 'Yes, turn it on' }).click();
  await expectText(page, 'is now on in People Team (HR)');
  assert(await focused(page) === 'flash', 'the flash takes focus');
  assert((await api({ base }, 'GET', '/api/v1/projects/HR')).body.invite_notification === true, 'turned on');
});

// Finding 5: every error at once in a summary that takes focus, the address bar on the
// page, post/redirect/get after adding customers (a reload adds nobody twice).
scenario('a form with errors stays on its page and its summary takes focus', 'admin', async ({ page, base }) => {
  await page.goto(`${base}/projects/TOG`);
  await page.getByLabel('Name').fill('');
  await page.getByLabel('Allow patterns (whitelist), one regular expression per line').fill('(unclosed');
  await page.getByLabel('Send registration emails also to').fill('copy@example.com');
  await page.getByRole('button', { name: 'Save settings' }).click();
  assert(new URL(page.url()).pathname === '/projects/TOG', `the address bar left the page: ${page.url()}`);
  await expectText(page, '3 things to fix');
  assert(await focused(page) === 'error-summary', `focus is on ${await focused(page)}, not the summary`);
  const summary = await page.locator('#error-summary').innerText();
  for (const word of ['Allow patterns, line 1', 'Choose To, Cc or Bcc']) assert(summary.includes(word), `the summary lacks "${word}": ${summary}`);
  for (const jargon of ['RFC 3339', 'It has no @']) assert(!summary.includes(jargon), `jargon: ${jargon}`);
});

scenario('adding customers redirects to the result and a reload adds nobody twice', 'admin', async ({ page, base }) => {
  await page.goto(`${base}/projects/IT`);
  await page.getByLabel('Addresses, one per line (or separated by commas)').fill('lee@example.com');
  await page.getByRole('button', { name: 'Add customers' }).click();
  const url = new URL(page.url());
  assert(url.pathname === '/projects/IT' && url.searchParams.get('added'), `not redirected to the result: ${page.url()}`);
  await expectText(page, 'Added 1 address to IT Help: 1 will get an email, 0 will not.');
  await expectText(page, 'Results: 1 will get an email, 0 will not');
  assert(await focused(page) === 'flash', 'the flash takes focus');
  await page.reload();
  await expectText(page, 'Results: 1 will get an email, 0 will not');
  const decisions = (await api({ base }, 'GET', '/api/v1/decisions?email=lee%40example.com')).body.items;
  assert(decisions.length === 1, `${decisions.length} decisions for lee after a reload`);
});

// Finding 6: on a phone, tables are cards with the status first; error pages keep the
// navigation; an expired form links back to its page.
demoScenario('on a phone a table row is a card with its status first', 'admin', async ({ page, base }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/outbox`);
  const [statusTop, otherTop, width, inner] = await page.evaluate(() => {
    const row = document.querySelector('table.cards tbody tr');
    const first = row.querySelector('td.first');
    const others = [...row.querySelectorAll('td')].filter((td) => td !== first && td.offsetParent !== null);
    return [first.getBoundingClientRect().top, Math.min(...others.map((td) => td.getBoundingClientRect().top)),
      document.documentElement.scrollWidth, window.innerWidth];
  });
  assert(statusTop < otherTop, `the status (${statusTop}) is not above the other cells (${otherTop})`);
  assert(width <= inner, `the page is ${width} px wide on a ${inner} px screen`);
  await page.goto(`${base}/no/such/page`);
  await expectText(page, 'Not found');
  assert(await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Outbox' }).count() === 1, 'the 404 page has no navigation');
});

// Finding 7: lists show their total and page both ways; decision links name recipient
// and kind.
scenario('the outbox shows its total, pages both ways, and names its links', 'admin', async ({ page, base }) => {
  const emails = Array.from({ length: 60 }, (_, i) => `page${i}@example.net`);
  const created = await api({ base }, 'PUT', '/api/v1/projects/PAGED', { name: 'Paged Desk' });
  assert(created.status === 200, JSON.stringify(created.body));
  const r = await api({ base }, 'POST', '/api/v1/projects/PAGED/customers', { emails });
  assert(r.status === 200, JSON.stringify(r.body));
  await page.goto(`${base}/outbox?project=PAGED`);
  await expectText(page, '60 decisions match');
  await page.getByRole('link', { name: 'Older' }).click();
  assert(await page.getByRole('link', { name: 'Newer' }).count() === 1, 'no Newer link on the older page');
  await page.getByRole('link', { name: 'Newer' }).click();
  assert(await page.getByRole('link', { name: 'Older' }).count() === 1, 'no Older link back on the newest page');
  const name = await page.locator('tbody tr td a[href^="/decisions/"]').first().innerText();
  const label = await page.locator('tbody tr td a[href^="/decisions/"]').first().evaluate((a) => a.textContent);
  assert(/page\d+@example\.net/.test(label) && /invitation/.test(label), `a decision link reads "${name}" / "${label}"`);
});

const passwords = { admin: ADMIN_PASSWORD, sam: 'support-password', vera: 'viewer-password' };
let passed = 0;
let failed = 0;
const server = await startServer();
try {
  await seed(server);
  // BROWSER_ONLY=regex runs only the scenarios whose names match (and no axe sweep).
  const only = process.env.BROWSER_ONLY ? new RegExp(process.env.BROWSER_ONLY) : null;
  for (const s of scenarios.filter((x) => !only || only.test(x.name))) {
    // Pages must work without JavaScript: the pages' own scripts are off.
    const browser = await launch({ javaScriptEnabled: false });
    const page = await browser.page();
    const started = Date.now();
    const demo = s.demo ? await startServer({ demo: true }) : null;
    try {
      const base = demo ? demo.base : server.base;
      if (s.user) await login(page, base, s.user, demo ? 'demo' : passwords[s.user]);
      await s.body({ page, base });
      passed += 1;
      console.log(`ok   ${s.name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed += 1;
      const file = `${outputDir}${s.name.replace(/[^a-z0-9]+/gi, '-')}.png`;
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.log(`FAIL ${s.name}: ${error.stack ?? error}\n     screenshot: ${file}`);
    } finally {
      await browser.close();
      if (demo) await demo.stop();
    }
  }
} finally {
  await server.stop();
}
// The accessibility sweep runs on its own --demo server.
if (!process.env.BROWSER_ONLY) {
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
