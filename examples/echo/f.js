// OpenLambda's classic: the JSON body in, the same value out.
exports.f = (event) => event;
