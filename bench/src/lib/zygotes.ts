import * as runtime from "@openlambda/lambda-runtime";

/**
 * Whether this build has zygotes (issue 5). `features.import_cache` exists in the config from
 * the start but means nothing until the lambda layer grows an import cache; the bench looks
 * for one in the lambda layer's public API (or is told by OL_BENCH_ZYGOTES=1|0), so that the
 * zygote series light up by themselves once it lands.
 */
export async function zygoteSupport(): Promise<{ available: boolean; how: string }> {
  const forced = process.env.OL_BENCH_ZYGOTES;
  if (forced === "1") return { available: true, how: "forced on by OL_BENCH_ZYGOTES=1" };
  if (forced === "0") return { available: false, how: "forced off by OL_BENCH_ZYGOTES=0" };
  const names = Object.keys(runtime).filter((k) => /zygote|importcache|readypool/i.test(k));
  return names.length
    ? { available: true, how: `@openlambda/lambda-runtime exports ${names.join(", ")}` }
    : { available: false, how: "@openlambda/lambda-runtime exports no zygote or import cache" };
}
