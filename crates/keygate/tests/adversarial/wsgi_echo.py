"""An upstream API as a Python WSGI framework sees requests, for the
adversarial tests: the standard library's WSGI server (which decodes the
path once into PATH_INFO, and folds header names -- `X_Keygate_Mode` and
`X-Keygate-Mode` alike -- into HTTP_X_KEYGATE_MODE, joining repeats with a
comma), with header names folded further as CGI and PHP fold them (every
character but a letter or digit as `_`, so `X.Keygate.Mode` too), answers
every request with what it received, as JSON:

- method: REQUEST_METHOD, and any method override a framework may honour;
- path: PATH_INFO as the server decoded it;
- resolved: the path as the most lenient application would route it
  (a leading `//` read as a host name, decoded once more, backslashes as slashes, `;` parameters dropped, dot
  segments resolved, trailing dots and spaces trimmed, compatibility forms
  normalized, lower case);
- headers: every HTTP_* variable.

It listens on 127.0.0.1 on a free port, which it prints on stdout.
"""

import json
import posixpath
import re
import sys
import unicodedata
import urllib.parse
from wsgiref.simple_server import WSGIRequestHandler, make_server


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

    def get_environ(self):
        environ = super().get_environ()
        parts = self.raw_requestline.decode("latin-1").split(" ")
        environ["RAW_TARGET"] = parts[1] if len(parts) > 1 else ""
        return environ


def resolved(path, raw_target):
    # A WHATWG URL parser (Node's `new URL(req.url, base)`) reads a leading
    # `//` of the target as the start of a host name: the first segment is
    # not path. (Python's server merges the slashes before PATH_INFO.)
    if raw_target.startswith("//"):
        path = "/" + raw_target.split("?", 1)[0][2:].partition("/")[2]
    text = urllib.parse.unquote(path, "utf-8", "replace")
    text = text.replace("\\", "/")
    segments = []
    for segment in text.split("/"):
        segment = segment.split(";", 1)[0].rstrip(". ").lstrip(" ")
        segments.append(segment)
    text = posixpath.normpath("/" + "/".join(segment for segment in segments if segment))
    return unicodedata.normalize("NFKC", text).lower()


def cgi_headers(environ):
    # CGI and PHP name a header HTTP_ + its name with every character but a
    # letter or digit as `_`; same names join with a comma.
    folded = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = "HTTP_" + re.sub(r"[^A-Z0-9]", "_", key[5:].upper())
            folded[name] = f"{folded[name]},{value}" if name in folded else value
    return folded


def app(environ, start_response):
    environ = {**environ, **cgi_headers(environ)}
    overrides = [
        environ.get(name)
        for name in ("HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD")
        if environ.get(name)
    ]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    overrides += query.get("_method", [])
    path = environ.get("PATH_INFO", "")
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "overrides": overrides,
            "path": path,
            "resolved": resolved(path, environ.get("RAW_TARGET", "")),
            "headers": cgi_headers(environ),
        }
    ).encode()
    start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print(server.server_address[1], flush=True)
    server.serve_forever()
