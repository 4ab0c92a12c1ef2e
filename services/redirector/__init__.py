"""The redirector: answers GET /{code} with a 302 and hands a click event to the publisher."""
