"""The item index: hnswlib with exact search where it is cheaper, filtered search, measured recall."""
