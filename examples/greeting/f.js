// Reads its settings from ol.yaml's environment.
exports.f = (event) =>
  `${process.env.GREETING}, ${event.name ?? "stranger"}${process.env.PUNCTUATION}`;
