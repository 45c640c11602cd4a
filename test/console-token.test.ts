import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { type ConsoleRun, skipConsole, startConsole } from './console-helpers.js';

/**
 * The console before a token is pasted, and with a token the server refuses, in real headless
 * Chromium: it says in its own words what to paste and where a token comes from, never the API's
 * raw "send Authorization: Bearer" message.
 */
let run: ConsoleRun | undefined;
after(() => run?.close());

test('console without a token, and with a refused one: what to paste, in the console words', {
  skip: skipConsole,
  timeout: 120_000,
}, async () => {
  run = await startConsole('pttoken-');
  const { base } = run;
  const page = await run.newPage();
  for (const route of ['#/', '#/agents', '#/events', '#/catalog']) {
    await page.goto(`${base}/${route}`);
    await page.getByText('No token yet: paste one in the API token box above.').first().waitFor();
    const text = (await page.locator('main').textContent()) ?? '';
    assert.doesNotMatch(text, /missing token|Authorization: Bearer/, `${route}: ${text}`);
    assert.match(text, /admin token: written to FILE/, route);
    assert.match(text, /POST \/api\/tokens \{"kind":"viewer"\}/, route);
  }
  await page.goto(`${base}/#/`);
  await page.getByLabel('API token').fill('not-a-token');
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByText('The server does not accept this token (mistyped, or revoked)').first().waitFor();
  assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /unknown token/);
  // The admin token works as before.
  await run.signIn(page);
  assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /token/i);
});
