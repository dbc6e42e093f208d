// A web handler: a Web Request in, a Web Response out, with its own routes.
// The URL's path is what follows /run/web: `curl localhost:5000/run/web/items/7?fields=name`
const items = new Map([
  ["7", { id: "7", name: "seven" }],
  ["8", { id: "8", name: "eight" }],
]);

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/items\/([^/]+)$/);
    if (url.pathname === "/" || url.pathname === "/items") {
      return Response.json([...items.values()]);
    }
    if (match && request.method === "GET") {
      const item = items.get(match[1]);
      return item ? Response.json(item) : new Response("no such item\n", { status: 404 });
    }
    if (match && request.method === "PUT") {
      const body = await request.json();
      items.set(match[1], { id: match[1], ...body });
      return Response.json(items.get(match[1]), { status: 201 });
    }
    return new Response("not found\n", { status: 404 });
  },
};
