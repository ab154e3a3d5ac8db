// digest in a real browser: Playwright (playwright-core) drives Debian's headless Chromium
// through the journey a person takes. Run by tests/browser.rs, which starts digest under shoal,
// serves the file to download (holding back its second half until this script has seen the
// progress bar part-way) and checks the digests printed here against its own.
//
// Environment:
//   SHOAL_TEST_CHROMIUM        the chromium executable
//   SHOAL_TEST_PLAYWRIGHT_DIR  the directory whose node_modules has playwright-core
//   DIGEST_BASE_URL            the formation's router, e.g. http://127.0.0.1:41234
//   DIGEST_FILE_URL            the file the worker downloads
//   DIGEST_UPLOAD              a file on disk to upload through the form
//   DIGEST_USER                a user name nobody has yet
//   DIGEST_ARTIFACTS           where screenshots go
//
// Standard output: one JSON object a line, each with an `event`:
//   {"event": "progress", ...}  the job page showed the download part-way (the test then lets
//                               the server send the rest)
//   {"event": "result", ...}    everything read from the pages, at the end
// On failure: the reason on standard error, a screenshot in DIGEST_ARTIFACTS (its path is
// printed), exit code 1.

import { createRequire } from "node:module";
import { join } from "node:path";

const TIMEOUT = 60_000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`journey.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const chromiumPath = env("SHOAL_TEST_CHROMIUM");
const playwrightDir = env("SHOAL_TEST_PLAYWRIGHT_DIR");
const baseURL = env("DIGEST_BASE_URL");
const fileUrl = env("DIGEST_FILE_URL");
const uploadPath = env("DIGEST_UPLOAD");
const user = env("DIGEST_USER");
const artifacts = env("DIGEST_ARTIFACTS");
const password = "correct horse battery";

const { chromium } = createRequire(join(playwrightDir, "package.json"))("playwright-core");

const emit = (event, data) => console.log(JSON.stringify({ event, ...data }));

let current = "starting";
async function step(name, body) {
  current = name;
  return body();
}

function check(condition, what) {
  if (!condition) {
    throw new Error(`${what}`);
  }
}

async function textOf(page, selector) {
  return ((await page.textContent(selector)) ?? "").trim();
}

// The report as the page shows it (state, progress bar, every report field).
async function readJobPage(page) {
  return page.evaluate(() => {
    const text = (id) => (document.getElementById(id)?.textContent ?? "").trim();
    const job = document.getElementById("job");
    const bar = document.getElementById("progress");
    return {
      id: Number(job.dataset.jobId),
      state: job.dataset.state,
      state_text: text("state"),
      state_class: document.getElementById("state").className,
      attempts: text("attempts"),
      source: text("source"),
      progress_position: bar.position,
      progress_text: text("progress-text"),
      error_hidden: document.getElementById("error").hidden,
      report_hidden: document.getElementById("report").hidden,
      size: text("report-size"),
      sha256: text("report-sha256"),
      blake3: text("report-blake3"),
      type: text("report-type"),
      mime: text("report-mime"),
      lines: text("report-lines"),
      encoding: text("report-encoding"),
    };
  });
}

async function journey(page) {
  await step("open digest: / leads to the sign-in page", async () => {
    await page.goto("/");
    await page.waitForURL("**/signin");
    await page.click("#nav-signup");
    await page.waitForURL("**/signup");
  });

  await step("sign up through the form", async () => {
    await page.fill("#username", user);
    await page.fill("#password", password);
    await Promise.all([page.waitForURL("**/files"), page.click("#signup-submit")]);
    check((await textOf(page, "#signed-in-as")) === user, "the page names the new user");
    check(await page.isVisible("#no-jobs"), "a new user has no files yet");
  });

  await step("sign out", async () => {
    await Promise.all([page.waitForURL("**/signin"), page.click("#signout")]);
  });

  await step("a wrong password is refused with a message", async () => {
    await page.fill("#username", user);
    await page.fill("#password", "not the password");
    await page.click("#signin-submit");
    await page.waitForSelector("#message", { state: "visible" });
    check(new URL(page.url()).pathname === "/signin", `still on the sign-in page (${page.url()})`);
  });

  await step("sign in through the form", async () => {
    await page.fill("#username", user);
    await page.fill("#password", password);
    await Promise.all([page.waitForURL("**/files"), page.click("#signin-submit")]);
    check((await textOf(page, "#signed-in-as")) === user, "the page names the user");
  });

  let urlJob;
  await step("submit the URL", async () => {
    await page.fill("#url", fileUrl);
    await Promise.all([page.waitForURL(/\/jobs\/\d+$/), page.click("#url-submit")]);
    // Gone if the page is ever reloaded: the report below must come from the page's script.
    await page.evaluate(() => {
      window.digestTestMark = true;
    });
  });

  let progress;
  await step("watch the progress bar part-way (the server holds back half the file)", async () => {
    const partial = await page.waitForFunction(
      () => {
        const job = document.getElementById("job");
        const bar = document.getElementById("progress");
        if (job.dataset.state === "running" && bar.position > 0 && bar.position < 1) {
          return {
            state: job.dataset.state,
            state_text: document.getElementById("state").textContent.trim(),
            position: bar.position,
            value: bar.value,
            max: bar.max,
            text: document.getElementById("progress-text").textContent.trim(),
          };
        }
        return false;
      },
      null,
      { polling: 100, timeout: TIMEOUT },
    );
    progress = await partial.jsonValue();
    await page.screenshot({ path: join(artifacts, "progress.png") });
    emit("progress", progress);
  });

  await step("the page's script shows the report once the job is done", async () => {
    await page.waitForFunction(
      () => ["done", "failed"].includes(document.getElementById("job").dataset.state),
      null,
      { polling: 100, timeout: TIMEOUT },
    );
    await page.waitForSelector("#report", { state: "visible" });
    urlJob = await readJobPage(page);
    urlJob.reloaded = !(await page.evaluate(() => window.digestTestMark === true));
    await page.screenshot({ path: join(artifacts, "report.png"), fullPage: true });
  });

  let listed;
  await step("my files lists the job as done", async () => {
    await Promise.all([page.waitForURL("**/files"), page.click("#nav-files")]);
    const row = `#job-${urlJob.id}`;
    await page.waitForSelector(row);
    listed = {
      state: await textOf(page, `${row} td.state`),
      link: await page.getAttribute(`${row} a.job-link`, "href"),
    };
  });

  let uploadJob;
  await step("upload a file through the form", async () => {
    await page.setInputFiles("#file", uploadPath);
    await Promise.all([page.waitForURL(/\/jobs\/\d+$/), page.click("#upload-submit")]);
    await page.waitForSelector("#report", { state: "visible" });
    uploadJob = await readJobPage(page);
  });

  await step("sign out, and my files needs signing in again", async () => {
    await Promise.all([page.waitForURL("**/signin"), page.click("#signout")]);
    await page.goto("/files");
    await page.waitForURL("**/signin");
  });

  return { progress, url_job: urlJob, listed, upload_job: uploadJob };
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  timeout: TIMEOUT,
  // As root on a machine without network: no sandbox, and nothing that phones home.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let page;
try {
  const context = await browser.newContext({ baseURL });
  context.setDefaultTimeout(TIMEOUT);
  context.setDefaultNavigationTimeout(TIMEOUT);
  page = await context.newPage();
  // Anything the page's script throws, and everything the browser refuses (a CSP violation,
  // an asset that does not load), is a failure.
  const problems = [];
  page.on("pageerror", (e) => problems.push(`uncaught in the page: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !isExpected(m)) {
      problems.push(`console error on ${page.url()}: ${m.text()}`);
    }
  });
  const result = await journey(page);
  current = "no errors in the browser console";
  check(problems.length === 0, problems.join("\n"));
  emit("result", result);
} catch (e) {
  const shot = join(artifacts, "failure.png");
  let saved = false;
  if (page) {
    saved = await page
      .screenshot({ path: shot, fullPage: true })
      .then(() => true)
      .catch(() => false);
  }
  console.error(`journey.mjs: failed at step "${current}" on ${page?.url() ?? "no page"}:`);
  console.error(e?.stack ?? String(e));
  console.error(saved ? `screenshot: ${shot}` : "no screenshot could be taken");
  process.exitCode = 1;
} finally {
  await browser.close();
}

// The wrong-password step answers 401 on purpose; Chromium logs that as a failed resource.
function isExpected(message) {
  return (
    message.text().includes("status of 401") && message.location().url.endsWith("/signin")
  );
}
