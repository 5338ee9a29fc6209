"""Valid inputs for every operation, with every optional member set, so
that each constraint of the model has a value to break.

The identifiers are well-formed but name nothing on the server: these
inputs pass validation and then get ResourceNotFoundException.
"""

# A managed base image that does not exist, so that no baseline creates anything.
BASE_IMAGE_ARN = "arn:aws:lambda:us-east-1:aws:microvm-image:no-such-base"
ROLE_ARN = "arn:aws:iam::123456789012:role/hearth-build"
MICROVM_ID = "microvm-0123456789abcdef0123456789abcdef"
IMAGE_NAME = "no-such-image"
IMAGE_ARN = f"arn:aws:lambda:us-east-1:000000000000:microvm-image:{IMAGE_NAME}"


def image_config():
    """Every member of an image configuration, valid."""
    return {
        "baseImageArn": BASE_IMAGE_ARN,
        "baseImageVersion": "1",
        "buildRoleArn": ROLE_ARN,
        "description": "conformance image",
        "codeArtifact": {"uri": "s3://hearth-artifacts/app.zip"},
        "logging": {"cloudWatch": {"logGroup": "/hearth/app", "logStream": "main"}},
        "egressNetworkConnectors": ["INTERNET_EGRESS"],
        "cpuConfigurations": [{"architecture": "X86_64"}],
        "resources": [{"minimumMemoryInMiB": 2048}],
        "additionalOsCapabilities": ["ALL"],
        "hooks": {
            "port": 9000,
            "microvmHooks": {
                "run": "ENABLED", "runTimeoutInSeconds": 5,
                "resume": "ENABLED", "resumeTimeoutInSeconds": 5,
                "suspend": "DISABLED", "suspendTimeoutInSeconds": 5,
                "terminate": "DISABLED", "terminateTimeoutInSeconds": 5,
            },
            "microvmImageHooks": {
                "ready": "ENABLED", "readyTimeoutInSeconds": 30,
                "validate": "DISABLED", "validateTimeoutInSeconds": 30,
            },
        },
        "environmentVariables": {"GREETING": "hello"},
    }


def baselines():
    """Operation name to a valid input naming nothing that exists."""
    version = {"imageIdentifier": IMAGE_NAME, "imageVersion": "1"}
    return {
        "CreateMicrovmAuthToken": {
            "microvmIdentifier": MICROVM_ID,
            "expirationInMinutes": 5,
            "allowedPorts": [
                {"port": 8080},
                {"range": {"startPort": 8000, "endPort": 8010}},
                {"allPorts": {}},
            ],
        },
        "CreateMicrovmImage": {
            **image_config(), "name": IMAGE_NAME, "tags": {"team": "hearth"}, "clientToken": "token-1",
        },
        "CreateMicrovmShellAuthToken": {"microvmIdentifier": MICROVM_ID, "expirationInMinutes": 5},
        "DeleteMicrovmImage": {"imageIdentifier": IMAGE_NAME},
        "DeleteMicrovmImageVersion": dict(version),
        "GetMicrovm": {"microvmIdentifier": MICROVM_ID},
        "GetMicrovmImage": {"imageIdentifier": IMAGE_NAME},
        "GetMicrovmImageBuild": {**version, "buildId": "build-0"},
        "GetMicrovmImageVersion": dict(version),
        "ListManagedMicrovmImageVersions": {
            "imageIdentifier": "no-such-base-image", "maxResults": 5,
        },
        "ListManagedMicrovmImages": {"maxResults": 5},
        "ListMicrovmImageBuilds": {
            **version, "maxResults": 5, "architecture": "X86_64", "chipset": "INTEL",
            "chipsetGeneration": "1",
        },
        "ListMicrovmImageVersions": {"imageIdentifier": IMAGE_NAME, "maxResults": 5},
        "ListMicrovmImages": {"maxResults": 5, "nameFilter": "app"},
        "ListMicrovms": {"maxResults": 5, "imageIdentifier": IMAGE_NAME, "imageVersion": "1"},
        "ListTags": {"Resource": IMAGE_ARN},
        "ResumeMicrovm": {"microvmIdentifier": MICROVM_ID},
        "RunMicrovm": {
            "imageIdentifier": IMAGE_NAME,
            "imageVersion": "1",
            "ingressNetworkConnectors": ["ALL_INGRESS"],
            "egressNetworkConnectors": ["INTERNET_EGRESS"],
            "executionRoleArn": ROLE_ARN,
            "idlePolicy": {
                "maxIdleDurationSeconds": 300, "suspendedDurationSeconds": 0,
                "autoResumeEnabled": True,
            },
            "logging": {"cloudWatch": {"logGroup": "/hearth/app", "logStream": "main"}},
            "runHookPayload": '{"tenant":"t1"}',
            "maximumDurationInSeconds": 3600,
            "clientToken": "token-1",
        },
        "SuspendMicrovm": {"microvmIdentifier": MICROVM_ID},
        "TagResource": {"Resource": IMAGE_ARN, "Tags": {"env": "dev"}},
        "TerminateMicrovm": {"microvmIdentifier": MICROVM_ID},
        "UntagResource": {"Resource": IMAGE_ARN, "TagKeys": ["env"]},
        "UpdateMicrovmImage": {**image_config(), "imageIdentifier": IMAGE_NAME, "clientToken": "token-1"},
        "UpdateMicrovmImageVersion": {**version, "status": "INACTIVE"},
    }
