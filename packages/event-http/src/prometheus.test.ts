import { describe, expect, it } from "vitest";
import { Histogram, renderPrometheus } from "./prometheus.js";

describe("renderPrometheus", () => {
  it("writes HELP, TYPE and samples with escaped help and label values", () => {
    const text = renderPrometheus([
      {
        name: "ol_x_total",
        help: "a\\b\nc",
        type: "counter",
        samples: [
          { value: 1 },
          { labels: { a: 'q"uo\\te\nnl', b: "plain" }, value: 2.5 },
          { labels: { "bad-label": "dropped" }, value: Number.NaN },
        ],
      },
      { name: "ol_g", help: "g", type: "gauge", samples: [{ value: Number.POSITIVE_INFINITY }] },
    ]);
    expect(text).toBe(
      [
        "# HELP ol_x_total a\\\\b\\nc",
        "# TYPE ol_x_total counter",
        "ol_x_total 1",
        'ol_x_total{a="q\\"uo\\\\te\\nnl",b="plain"} 2.5',
        "ol_x_total NaN",
        "# HELP ol_g g",
        "# TYPE ol_g gauge",
        "ol_g +Inf",
        "",
      ].join("\n"),
    );
  });

  it("skips invalid names and renders a repeated name once", () => {
    const text = renderPrometheus([
      { name: "bad name", help: "", type: "gauge", samples: [{ value: 1 }] },
      { name: "ol_a", help: "first", type: "gauge", samples: [{ value: 1 }] },
      { name: "ol_a", help: "second", type: "gauge", samples: [{ value: 2 }] },
    ]);
    expect(text).toBe("# HELP ol_a first\n# TYPE ol_a gauge\nol_a 1\n");
  });
});

describe("Histogram", () => {
  it("renders cumulative buckets, sum and count", () => {
    const h = new Histogram("ol_h", "h", [0.1, 1]);
    for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v);
    expect(h.render()).toBe(
      [
        "# HELP ol_h h",
        "# TYPE ol_h histogram",
        'ol_h_bucket{le="0.1"} 2',
        'ol_h_bucket{le="1"} 3',
        'ol_h_bucket{le="+Inf"} 4',
        "ol_h_sum 3.65",
        "ol_h_count 4",
        "",
      ].join("\n"),
    );
  });
});
