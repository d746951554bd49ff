import { describe, expect, it } from "vitest";
import YAML from "yaml";

import { Api, ApiError, toError } from "./api";
import { MESSAGES, translate } from "./i18n";
import { type ComponentInfo, type JobDraft, order, problems, toJob, toYaml } from "./jobspec";
import { fields, parse } from "./schema";

const catalog: Record<string, ComponentInfo> = {
  psi: {
    type: "psi",
    summary: "",
    outputs: ["intersection"],
    params: { properties: { protocol: { enum: ["ecdh", "rr22"], default: "ecdh" } } },
  },
  train_sgb: {
    type: "train_sgb",
    summary: "",
    outputs: ["model", "scores"],
    params: {
      required: ["label"],
      properties: {
        label: { type: "object" },
        trees: { type: "integer", default: 10 },
        learning_rate: { type: "number" },
        subsample: { anyOf: [{ type: "number" }, { type: "null" }] },
      },
    },
  },
};

function draft(): JobDraft {
  return {
    name: "joint",
    parties: ["bank", "telecom"],
    nodes: [
      {
        id: "sgb",
        type: "train_sgb",
        params: { label: { party: "bank", column: "y" }, trees: 5 },
        datasets: {},
      },
      {
        id: "psi",
        type: "psi",
        params: { protocol: "rr22" },
        datasets: { bank: { dataset: "customers", id: "cid" }, telecom: { dataset: "subs", id: "cid" } },
      },
    ],
    edges: [{ source: "psi", output: "intersection", target: "sgb" }],
  };
}

describe("job builder", () => {
  it("turns the canvas into a job in dependency order", () => {
    const job = toJob(draft(), catalog) as { components: Array<Record<string, any>> };
    expect(job.components.map((c) => c.id)).toEqual(["psi", "sgb"]);
    expect(job.components[0].inputs.bank).toEqual({ dataset: "customers", id: "cid" });
    expect(job.components[1].inputs.telecom).toEqual({ from: "psi.intersection" });
    expect(job.components[1].outputs.model.receivers).toEqual(["bank", "telecom"]);
    expect(YAML.parse(toYaml(job))).toEqual(job);
    expect(problems(draft(), catalog)).toEqual([]);
  });

  it("names what is missing or wrong", () => {
    const d = draft();
    d.nodes[0].params = {};
    d.nodes[1].datasets = { bank: { dataset: "customers" } };
    d.edges.push({ source: "sgb", output: "nope", target: "psi" });
    const found = problems(d, catalog).join("; ");
    expect(found).toContain("sgb: label is required");
    expect(found).toContain("sgb has no output nope");
    expect(found).toContain("cycle");
    d.edges = [];
    expect(problems(d, catalog).join("; ")).toContain("sgb: bank needs a dataset");
  });

  it("carries output receivers and columns, and several feeding components", () => {
    const d = draft();
    d.nodes[1].receivers = { intersection: ["bank", "telecom"] };
    d.nodes[1].columns = { intersection: { bank: ["age", "y"], telecom: [] } };
    d.nodes.push({ id: "ev", type: "psi", params: {}, datasets: {}, parties: ["bank"] });
    d.nodes[0].receivers = { model: ["bank", "telecom"], scores: ["bank"] };
    d.edges.push({ source: "sgb", output: "scores", target: "ev" });
    const job = toJob(d, catalog) as { components: Array<Record<string, any>> };
    const psi = job.components.find((c) => c.id === "psi")!;
    expect(psi.outputs.intersection).toEqual({
      receivers: ["bank", "telecom"],
      columns: { bank: ["age", "y"] },
    });
    const ev = job.components.find((c) => c.id === "ev")!;
    expect(ev.inputs).toEqual({ bank: { from: "sgb.scores" } });
    // a model edge orders the components but is not an input (params name the model)
    d.edges.push({ source: "sgb", output: "model", target: "ev" });
    d.edges.reverse();
    const again = toJob(d, catalog) as { components: Array<Record<string, any>> };
    expect(again.components.find((c) => c.id === "ev")!.inputs).toEqual({ bank: { from: "sgb.scores" } });
    expect(job.components.map((c) => c.id)).toEqual(["psi", "sgb", "ev"]);
  });

  it("finds cycles", () => {
    const d = draft();
    d.edges.push({ source: "sgb", output: "scores", target: "psi" });
    expect(order(d)).toBeNull();
  });
});

describe("parameter forms", () => {
  const f = Object.fromEntries(fields(catalog.train_sgb.params).map((x) => [x.name, x]));
  it("types each field from the schema", () => {
    expect(f.label).toMatchObject({ kind: "json", required: true });
    expect(f.trees).toMatchObject({ kind: "integer", default: 10 });
    expect(f.subsample.kind).toBe("number");
    expect(fields(catalog.psi.params)[0]).toMatchObject({ kind: "enum", options: ["ecdh", "rr22"] });
  });
  it("parses and refuses values", () => {
    expect(parse(f.trees, "12")).toEqual({ value: 12 });
    expect(parse(f.trees, "1.5").error).toContain("whole number");
    expect(parse(f.label, "").error).toContain("required");
    expect(parse(f.label, '{"party": "bank"}')).toEqual({ value: { party: "bank" } });
    expect(parse(f.label, "{oops").error).toContain("JSON");
    expect(parse(f.learning_rate, "x").error).toContain("a number");
    expect(parse(f.learning_rate, "")).toEqual({ value: undefined });
  });
});

describe("api", () => {
  it("sends the token and turns errors into readable messages", async () => {
    const seen: Array<[string, RequestInit | undefined]> = [];
    const api = new Api("t0k", "http://n", async (url, init) => {
      seen.push([url, init]);
      if (url.endsWith("/bad")) {
        return new Response(JSON.stringify({ error: { code: "unauthorized", message: "no grant" } }), {
          status: 403,
        });
      }
      if (url.endsWith("/html")) return new Response("<html>oops</html>", { status: 502 });
      return new Response(JSON.stringify({ ok: 1 }), { status: 200 });
    });
    expect(await api.get("/v1/x")).toEqual({ ok: 1 });
    expect((seen[0][1]?.headers as Record<string, string>).Authorization).toBe("Bearer t0k");
    await expect(api.post("/v1/bad", { a: 1 })).rejects.toMatchObject({
      status: 403,
      code: "unauthorized",
      message: "no grant",
    });
    await expect(api.get("/v1/html")).rejects.toThrow("HTTP 502: <html>oops</html>");
    const down = new Api("t", "", async () => {
      throw new TypeError("connection refused");
    });
    await expect(down.get("/v1/x")).rejects.toMatchObject({ code: "unreachable" });
    expect(toError(500, null)).toBeInstanceOf(ApiError);
  });
});

describe("i18n", () => {
  it("has every key in both languages, Chinese first", () => {
    expect(Object.keys(MESSAGES.zh).sort()).toEqual(Object.keys(MESSAGES.en).sort());
    for (const v of Object.values(MESSAGES.zh)) expect(v.length).toBeGreaterThan(0);
    expect(translate("zh", "overview")).toBe("概览");
    expect(translate("en", "overview")).toBe("Overview");
  });
});
