# Validates Kubernetes objects against the schemas that PyPI's kubernetes-validate bundles (no
# network). Reads {"version": "1.32", "objects": [...]} as JSON on stdin and prints one JSON list:
# for each object that fails, its index, the path of the field and the schema's message.
import json
import sys

import kubernetes_validate
from kubernetes_validate.utils import VersionNotSupportedError

request = json.load(sys.stdin)
found = []
for index, obj in enumerate(request["objects"]):
    try:
        kubernetes_validate.validate(obj, request["version"], strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(part) for part in err.path)
        found.append({"index": index, "path": path, "message": err.message})
    except (kubernetes_validate.SchemaNotFoundError, VersionNotSupportedError) as err:
        found.append({"index": index, "path": "apiVersion", "message": err.message})
json.dump(found, sys.stdout)
