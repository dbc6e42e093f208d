// An ES module lambda: `curl -d '{"name":"Ada"}' localhost:5000/run/hello`
export function f(event, context) {
  return { hello: event.name ?? "world", lambda: context.lambda };
}
