"""The candidates table's schema (no AWS SDK needed: the template uses it too)."""

from __future__ import annotations

from typing import Any

__all__ = ["RANK_INDEX", "candidate_table_schema"]

RANK_INDEX = "ByProgramRank"


def candidate_table_schema() -> dict[str, Any]:
    """Key schema, attributes and index of the candidates table, as CreateTable and CloudFormation take them.

    >>> candidate_table_schema()["GlobalSecondaryIndexes"][0]["IndexName"]
    'ByProgramRank'
    """
    return {
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "programId", "AttributeType": "S"},
            {"AttributeName": "rank", "AttributeType": "B"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": RANK_INDEX,
                "KeySchema": [
                    {"AttributeName": "programId", "KeyType": "HASH"},
                    {"AttributeName": "rank", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
