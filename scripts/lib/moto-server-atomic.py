"""moto's server with S3 conditional writes made atomic, as they are on S3.

moto checks If-None-Match / If-Match and then stores the object in two separate steps, on a
threaded server without a lock: two concurrent conditional PUTs of one key can both pass the
check and both create a version, which S3 never does (a conditional write is atomic there).
Tapline's idempotency (one result version per source object, one marker per window, one lock
per host) rests on that guarantee, so its tests need an emulator that keeps it. This wraps
the two request handlers that can carry a condition (PutObject, and the POST that completes a
multipart upload) in one lock when a condition header is present, then runs moto's server
with the same arguments (`-H HOST -p PORT`). Nothing else changes.
"""

import threading

from moto.s3 import responses
from moto.server import main

_conditional = threading.RLock()


def _atomic(handler):
    def wrapper(self, *args, **kwargs):
        headers = self.headers
        if headers.get("If-None-Match") or headers.get("If-Match"):
            with _conditional:
                return handler(self, *args, **kwargs)
        return handler(self, *args, **kwargs)

    wrapper.__name__ = handler.__name__
    return wrapper


responses.S3Response.put_object = _atomic(responses.S3Response.put_object)
responses.S3Response._key_response_post = _atomic(responses.S3Response._key_response_post)

if __name__ == "__main__":
    main()
