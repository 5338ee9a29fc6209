"""The server makes its key pair on first start and installs the `hearth`
profile into the AWS config files, leaving every other profile alone."""

import configparser
import json
import os
import stat

from conftest import AWS_HOME


def test_the_key_pair_is_private_and_aws_shaped(server):
    path = server.data_dir / "api-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keys = json.loads(path.read_text())
    assert keys["accessKeyId"].startswith("AKIA") and len(keys["accessKeyId"]) == 20
    assert keys["accessKeyId"][4:].isalnum() and keys["accessKeyId"][4:].upper() == keys["accessKeyId"][4:]
    assert len(keys["secretAccessKey"]) == 40


def test_the_hearth_profile_is_added_and_others_are_kept(server):
    keys = json.loads((server.data_dir / "api-credentials.json").read_text())
    text = (AWS_HOME / "credentials").read_text()
    assert text.startswith("# kept by hearth\n")
    credentials = configparser.ConfigParser()
    credentials.read_string(text)
    assert credentials["hearth"]["aws_access_key_id"] == keys["accessKeyId"]
    assert credentials["hearth"]["aws_secret_access_key"] == keys["secretAccessKey"]
    assert credentials["other"]["aws_access_key_id"] == "AKIAOTHEROTHEROTHER0"
    assert credentials["default"]["aws_secret_access_key"] == "default-secret"
    assert stat.S_IMODE(os.stat(AWS_HOME / "credentials").st_mode) == 0o600

    config = configparser.ConfigParser()
    config.read_string((AWS_HOME / "config").read_text())
    assert config["profile hearth"]["region"] == "us-east-1"
    assert config["profile other"]["region"] == "ap-south-1"
    assert config["default"]["region"] == "eu-west-1"
