// End to end: the console in Debian's headless Chromium (playwright-core, no downloaded
// browser) against a real local federation started by tests/web/test_console_e2e.py.
// Env: RB_URL (the bank node's API, serving the console), RB_TOKEN, RB_DATA (the bank's CSV),
// RB_SHOTS (where screenshots go).
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { RB_URL, RB_TOKEN, RB_DATA, RB_SHOTS } = process.env;
const shots = RB_SHOTS ?? "shots";
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
const step = async (name, fn) => {
  const t0 = Date.now();
  await fn();
  await page.screenshot({ path: `${shots}/${name}.png` });
  console.log(JSON.stringify({ step: name, ms: Date.now() - t0 }));
};
const fill = (name, value) => page.fill(`input[name="${name}"]`, value);

try {
  const t0 = Date.now();
  await page.goto(RB_URL + "/");
  await page.waitForSelector('input[name="token"]');
  console.log(JSON.stringify({ step: "first-render", ms: Date.now() - t0 }));
  await step("01-login", async () => {
    await fill("token", "wrong");
    await page.keyboard.press("Enter");
    await page.waitForSelector('[role="alert"]'); // a readable error, not a blank page
    await fill("token", RB_TOKEN);
    await page.keyboard.press("Enter");
    await page.waitForSelector('[data-testid="node-name"]');
    await page.waitForSelector('[data-testid="peer-telecom"] td.ok'); // online, with its latency
  });
  await step("02-language", async () => {
    await page.getByRole("button", { name: "English" }).click();
    await page.getByRole("button", { name: "Data", exact: true }).waitFor();
  });
  await step("03-dataset", async () => {
    await page.getByRole("button", { name: "Data", exact: true }).click();
    await fill("ds-name", "customers");
    await fill("ds-path", RB_DATA);
    await fill("ds-id", "customer_id");
    await page.getByRole("button", { name: "Register a dataset" }).last().click();
    await page.waitForSelector('[data-testid="dataset-customers"]');
  });
  await step("04-grant", async () => {
    await page.getByRole("button", { name: "Grants & requests" }).click();
    await fill("g-dataset", "customers");
    await fill("g-peer", "telecom");
    await fill("g-columns", "*");
    await fill("g-components", "psi,train_sgb,predict");
    await fill("g-receivers", "bank,telecom");
    await page.getByRole("button", { name: "Add grant" }).last().click();
    await page.waitForSelector('[data-testid="grant-customers-telecom"]');
  });
  await step("05-builder", async () => {
    await page.getByRole("button", { name: "Job builder" }).click();
    await page.getByRole("button", { name: "psi", exact: true }).click();
    await page.getByRole("button", { name: "train_sgb", exact: true }).click();
    await fill("job-name", "console-sgb");
    await fill("job-parties", "bank,telecom");
    // the psi node: both parties' data, the columns each keeps
    await page.locator('.react-flow__node[data-id="psi1"]').click();
    await fill("ds-psi1-bank", "customers");
    await fill("id-psi1-bank", "customer_id");
    await fill("ds-psi1-telecom", "subscribers");
    await fill("id-psi1-telecom", "customer_id");
    await fill("c-psi1-intersection-bank", "age,monthly_income,loan_balance,max_overdue_days,default_12m");
    await fill("c-psi1-intersection-telecom", "tenure_months,monthly_spend,late_payments_12m,prepaid");
    // connect psi's intersection to train_sgb
    const src = page.locator('.react-flow__node[data-id="psi1"] .react-flow__handle.source');
    const dst = page.locator('.react-flow__node[data-id="train_sgb1"] .react-flow__handle.target');
    await src.dragTo(dst);
    await page.waitForSelector(".react-flow__edge");
    await page.locator('.react-flow__node[data-id="train_sgb1"]').click();
    await fill("p-train_sgb1-label", '{"party": "bank", "column": "default_12m"}');
    await fill("p-train_sgb1-features",
      '{"bank": ["age", "monthly_income", "loan_balance", "max_overdue_days"], ' +
      '"telecom": ["tenure_months", "monthly_spend", "late_payments_12m", "prepaid"]}');
    await fill("p-train_sgb1-trees", "3");
    await fill("r-train_sgb1-report", "bank");
    // predict with the model, at the label party; evaluate its scores there
    await page.getByRole("button", { name: "predict", exact: true }).click();
    await page.getByRole("button", { name: "evaluate", exact: true }).click();
    const handle = (node, kind, id) =>
      page.locator(`.react-flow__node[data-id="${node}"] .react-flow__handle.${kind}` +
        (id ? `[data-handleid="${id}"]` : ""));
    await handle("psi1", "source").dragTo(handle("predict1", "target"));
    await handle("train_sgb1", "source", "model").dragTo(handle("predict1", "target"));
    await handle("predict1", "source").dragTo(handle("evaluate1", "target"));
    await page.waitForFunction(() => document.querySelectorAll(".react-flow__edge").length === 4);
    await page.locator('.react-flow__node[data-id="predict1"]').click();
    await fill("p-predict1-model", "train_sgb1");
    await fill("p-predict1-features",
      '{"bank": ["age", "monthly_income", "loan_balance", "max_overdue_days"], ' +
      '"telecom": ["tenure_months", "monthly_spend", "late_payments_12m", "prepaid"]}');
    await fill("p-predict1-label", "default_12m");
    await fill("r-predict1-predictions", "bank");
    await page.locator('.react-flow__node[data-id="evaluate1"]').click();
    await fill("parties-evaluate1", "bank");
    await page.getByRole("button", { name: "Validate" }).click();
    await page.waitForSelector("text=✓");
  });
  await step("06-submit", async () => {
    await page.getByRole("button", { name: "Submit" }).click();
    await page.getByRole("button", { name: "Refresh" }).first().waitFor();
  });
  await step("07-monitor", async () => {
    await page.locator("tbody button.act").first().click();
    await page.waitForSelector('[data-testid="job-status"]:text("succeeded")', { timeout: 240000 });
    // the graph, drawn: its edges in the page (React Flow sizes an edge's path only after it
    // has measured the nodes, which a loaded machine can delay past "visible")
    await page.waitForSelector('[data-testid="job-dag"] .react-flow__edge', {
      state: "attached",
      timeout: 90000,
    });
  });
  await step("08-results", async () => {
    await page.getByRole("button", { name: /^report/ }).last().click();
    await page.waitForSelector("text=evaluate1.report");
    await page.waitForSelector('[data-testid="roc-chart"] canvas');
    await page.waitForSelector('[data-testid="model-card"] canvas'); // feature importance
  });
  await step("09-ledger", async () => {
    await page.getByRole("button", { name: "Ledger & metering" }).click();
    await page.getByRole("button", { name: "Verify ledger" }).click();
    await page.waitForSelector('[data-testid="ledger-verified"]:text("intact")');
  });
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  await page.screenshot({ path: `${shots}/failure.png` });
  console.error(String(e));
  console.log(JSON.stringify({ ok: false, error: String(e), html: (await page.content()).slice(0, 3000) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
