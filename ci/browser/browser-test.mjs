// Opens the built book in headless Chromium and checks what a reader sees, page by page.
//
//   node ci/browser/browser-test.mjs BASE_URL BOOK_DIR SCREENSHOT_DIR
//
// Run by ci/browser_test.sh, which builds nothing: it serves an already built book/ on a free
// localhost port and passes its URL here. Checks, for every page listed in src/SUMMARY.md
// (plus print.html):
//   - no page error: no uncaught exception, no console error, no failed or 4xx/5xx request,
//     and no request leaving localhost (the workshop room has no network);
//   - every ```mermaid diagram rendered to an <svg> (and not to mermaid's "Syntax error");
//   - <details> blocks (speaker notes, solutions) start collapsed; no code block has a Run button;
//   - the sidebar lists every page of SUMMARY.md;
//   - search finds `on_message`;
//   - the print page holds every chapter's title and all their diagrams, drawn before it
//     calls window.print().
// Saves screenshots of two chapters in SCREENSHOT_DIR. Exits 1 with one line per problem.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, bookDir, shotDir] = process.argv.slice(2);
if (!base || !bookDir || !shotDir) {
  console.error("usage: node browser-test.mjs BASE_URL BOOK_DIR SCREENSHOT_DIR");
  process.exit(2);
}
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SEARCH_TERM = "on_message";
const TIMEOUT_MS = 20_000;

// The pages a reader can reach from the table of contents, in order: `[Title](file.md)`.
// The book's sources sit beside its output (mdBook's default); else this repository's.
const besideBook = path.join(path.dirname(path.resolve(bookDir)), "src/SUMMARY.md");
const summaryPath = fs.existsSync(besideBook) ? besideBook : path.join(root, "src/SUMMARY.md");
const summary = fs.readFileSync(summaryPath, "utf8");
const pages = [...summary.matchAll(/\]\(([^)]+)\.md\)/g)].map((m) => `${m[1]}.html`);
if (pages.length === 0) {
  console.error("browser test: no pages found in src/SUMMARY.md");
  process.exit(1);
}

const problems = [];
const seen = new Set();
const problem = (where, what) => {
  const line = `${where}: ${what}`;
  if (!seen.has(line)) problems.push(line);
  seen.add(line);
};
const started = Date.now();

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  chromiumSandbox: false, // CI runs as root: Chromium refuses to start sandboxed as root
  // Playwright starts Chromium with a new, empty profile directory of its own. The flags
  // keep it from calling home: the machine has no network and Chromium's retries are noise.
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// The book is served from localhost; anything else is a resource the room won't have.
const origin = new URL(base).origin;
await context.route(
  (url) => url.origin !== origin && url.protocol !== "data:" && url.protocol !== "blob:",
  (route) => route.abort("blockedbyclient"),
);

/** Opens `file`, records every error the page raises while loading, returns the page. */
async function open(file) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(`uncaught exception: ${error.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console error: ${msg.text()}`);
  });
  page.on("requestfailed", (request) => {
    const url = request.url();
    if (!url.startsWith(origin)) errors.push(`request leaves localhost: ${url}`);
    else errors.push(`request failed: ${url} (${request.failure()?.errorText})`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) errors.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  // print.html calls window.print() 100ms after it loaded. Replace it (no print dialog in a
  // test) by a recorder of how many diagrams were drawn when it was called: a diagram that is
  // still mermaid source at that moment is printed as source.
  await page.addInitScript(() => {
    window.print = () => {
      window.__printed = {
        drawn: document.querySelectorAll("pre.mermaid svg").length,
        blocks: document.querySelectorAll("pre.mermaid").length,
      };
    };
  });
  const response = await page.goto(`${base}/${file}`, { waitUntil: "load", timeout: TIMEOUT_MS });
  if (!response || !response.ok()) problem(file, `HTTP ${response?.status()}`);
  await page.waitForLoadState("networkidle", { timeout: TIMEOUT_MS }).catch(() => {});
  return { page, errors };
}

/** Waits until every mermaid block holds an <svg>; returns [blocks, rendered, broken]. */
async function mermaid(page, file) {
  const blocks = await page.locator("pre.mermaid").count();
  if (blocks === 0) return [0, 0, 0];
  await page
    .waitForFunction(
      () => [...document.querySelectorAll("pre.mermaid")].every((el) => el.querySelector("svg")),
      null,
      { timeout: TIMEOUT_MS },
    )
    .catch(() => {});
  const [rendered, broken] = await page.evaluate(() => {
    const all = [...document.querySelectorAll("pre.mermaid")];
    const svgs = all.filter((el) => el.querySelector("svg"));
    // A diagram mermaid cannot parse still becomes an <svg>: one that says "Syntax error".
    const bad = svgs.filter((el) => /Syntax error/i.test(el.textContent) || el.querySelector(".error-icon"));
    return [svgs.length, bad.length];
  });
  if (rendered < blocks) problem(file, `${blocks - rendered} of ${blocks} mermaid diagram(s) did not render to an <svg>`);
  if (broken > 0) problem(file, `${broken} mermaid diagram(s) rendered as "Syntax error": check the diagram source`);
  return [blocks, rendered, broken];
}

const titles = {};
let diagrams = 0;
const shots = [];
for (const file of pages) {
  const pageStarted = Date.now();
  const { page, errors } = await open(file);
  titles[file] = (await page.locator("main h1").first().textContent().catch(() => ""))?.trim();
  if (!titles[file]) problem(file, "no <h1> title in the page");
  const [blocks] = await mermaid(page, file);
  diagrams += blocks;
  // Speaker notes and solutions start collapsed; nothing offers to run code on the playground
  // (the book's code needs the lab and a Redis server, and the room has no network).
  const open_details = await page.locator("main details[open]").count();
  if (open_details > 0) problem(file, `${open_details} <details> block(s) open on load: speaker notes and solutions start collapsed`);
  const play = await page.locator("main .play-button").count();
  if (play > 0) problem(file, `${play} code block(s) with a Run button: mark them rust,ignore or rust,noplayground`);
  for (const error of errors) problem(file, error);
  // Screenshots: "Running the lab" (the reader's first steps) and the first chapter with a diagram.
  if (file === "running-the-lab.html" || (blocks > 0 && !shots.some((s) => s.diagram))) {
    const shot = path.join(shotDir, file.replace(/\.html$/, ".png"));
    await page.screenshot({ path: shot, fullPage: false });
    shots.push({ file: shot, diagram: blocks > 0 });
  }
  const ms = Date.now() - pageStarted;
  console.log(`  ${file}: ${errors.length === 0 ? "ok" : errors.length + " error(s)"}, ${blocks} diagram(s), ${ms}ms`);
  await page.close();
}
// Without any diagram yet, take the second screenshot of the first chapter.
if (shots.length < 2) {
  const file = pages.find((f) => /^ch\d\d-/.test(f)) ?? pages[0];
  const { page } = await open(file);
  const shot = path.join(shotDir, file.replace(/\.html$/, ".png"));
  await page.screenshot({ path: shot });
  shots.push({ file: shot, diagram: false });
  await page.close();
}

// The sidebar lists every page of SUMMARY.md (mdBook 0.5 fills it from toc.js at load time).
{
  const { page, errors } = await open("index.html");
  for (const error of errors) problem("index.html", error);
  await page.waitForSelector("#mdbook-sidebar a[href]", { timeout: TIMEOUT_MS }).catch(() => {});
  const links = await page.$$eval("#mdbook-sidebar a[href]", (as) => as.map((a) => a.getAttribute("href")));
  const listed = new Set(links.map((href) => href.replace(/^\.\//, "").replace(/#.*$/, "")));
  for (const file of pages) {
    if (!listed.has(file)) problem("sidebar", `does not list ${file}`);
  }
  console.log(`  sidebar: ${links.length} links, ${pages.filter((f) => listed.has(f)).length}/${pages.length} pages`);

  // Search: open the search bar as a reader would (the "s" key), type, read the results.
  await page.locator("body").press("s");
  const bar = page.locator("#mdbook-searchbar");
  await bar.waitFor({ state: "visible", timeout: TIMEOUT_MS }).catch(() => {});
  if (!(await bar.isVisible())) {
    problem("search", "pressing 's' did not open the search bar");
  } else {
    // mdBook searches on keyup: type like a reader, not fill().
    await bar.pressSequentially(SEARCH_TERM);
    await page
      .waitForSelector("#mdbook-searchresults li a", { timeout: TIMEOUT_MS })
      .catch(() => {});
    const hits = await page.$$eval("#mdbook-searchresults li a", (as) => as.map((a) => a.getAttribute("href")));
    if (hits.length === 0) problem("search", `no result for "${SEARCH_TERM}"`);
    console.log(`  search "${SEARCH_TERM}": ${hits.length} result(s), first ${hits[0] ?? "-"}`);
  }
  for (const error of errors.splice(0)) problem("index.html (search)", error);
  await page.close();
}

// The print page: one document with every chapter and every diagram, for offline reading.
{
  const { page, errors } = await open("print.html");
  for (const error of errors) problem("print.html", error);
  const headings = new Set(
    (await page.$$eval("main h1", (hs) => hs.map((h) => h.textContent.trim()))),
  );
  for (const [file, title] of Object.entries(titles)) {
    if (title && !headings.has(title)) problem("print.html", `misses the chapter "${title}" (${file})`);
  }
  const [blocks] = await mermaid(page, "print.html");
  if (blocks !== diagrams) problem("print.html", `${blocks} diagram(s), the chapters have ${diagrams}`);
  await page.waitForFunction(() => window.__printed, null, { timeout: TIMEOUT_MS }).catch(() => {});
  const printed = await page.evaluate(() => window.__printed);
  if (!printed) problem("print.html", "never called window.print()");
  else if (printed.drawn < printed.blocks)
    problem("print.html", `window.print() came when ${printed.drawn} of ${printed.blocks} diagram(s) were drawn: the rest would print as source`);
  console.log(`  print.html: ${headings.size} chapter titles, ${blocks} diagram(s)`);
  await page.close();
}

await browser.close();
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`  screenshots: ${shots.map((s) => path.relative(root, s.file)).join(", ")}`);
if (problems.length > 0) {
  console.log(`browser test: ${problems.length} problem(s) in ${seconds}s:`);
  for (const p of problems) console.log(`  - ${p}`);
  process.exit(1);
}
console.log(`browser test: ${pages.length} pages + print.html, ${diagrams} diagram(s), ok in ${seconds}s`);
