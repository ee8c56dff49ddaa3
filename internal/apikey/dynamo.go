package apikey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/bucketgate/bucketgate/internal/limiter"
)

// DynamoDB item attribute names. The table's partition key is AttrKeyHash
// (type S); it has no sort key and no secondary index. See CreateTable.
const (
	AttrKeyHash   = "keyHash"   // S: Record.Hash (partition key)
	AttrID        = "id"        // S: Record.ID
	AttrName      = "name"      // S: Record.Name (may be "")
	AttrTier      = "tier"      // S: Record.Tier
	AttrCreatedAt = "createdAt" // S: Record.CreatedAt, RFC 3339 in UTC with up to nanoseconds
	AttrRevoked   = "revoked"   // BOOL: Record.Revoked
	AttrRevokedAt = "revokedAt" // S: Record.RevokedAt, RFC 3339; present only when revoked
	AttrLimit     = "limit"     // S: Record.Limit in limiter.Policy's String form; present only when set
	AttrExpiresAt = "expiresAt" // S: Record.ExpiresAt, RFC 3339 in UTC; present only when set
)

// DynamoAPI is the part of *dynamodb.Client a DynamoStore uses.
type DynamoAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ DynamoAPI = (*dynamodb.Client)(nil)

// DynamoConfig configures a DynamoStore.
type DynamoConfig struct {
	// Client is an already-configured DynamoDB client, e.g.
	// dynamodb.NewFromConfig(cfg) after config.LoadDefaultConfig, which
	// honours AWS_ENDPOINT_URL_DYNAMODB (and AWS_ENDPOINT_URL) for local
	// endpoints. On the authorizer's hot path give it few retries
	// (o.RetryMaxAttempts = 2) and call Lookup with a deadline. Required.
	Client DynamoAPI
	// Table is the table name (API_KEYS_TABLE). Required.
	Table string
	// Now is the clock for RevokedAt and for expiry. Nil: time.Now.
	Now func() time.Time
}

// DynamoStore keeps records in a DynamoDB table, one item per key, keyed by
// the key's hash:
//
//	partition key  keyHash (S)   no sort key, no secondary index
//	attributes     id (S), name (S), tier (S), createdAt (S, RFC 3339),
//	               revoked (BOOL), revokedAt (S, only when revoked),
//	               limit (S, e.g. "30/minute:burst=50", only when set),
//	               expiresAt (S, RFC 3339, only when set)
//
// Lookup is one eventually consistent GetItem (0.5 read capacity units)
// projecting keyHash, id, tier, revoked, limit and expiresAt; the Record it
// returns has only ID, Tier, Hash, Limit and ExpiresAt set. A limit or
// expiresAt that does not parse is an error naming the key's ID and the
// attribute, never a silent fallback to the tier's limit. Create is a
// conditional PutItem (never overwrites a hash). List, Revoke and SetLimit
// (admin paths, rare) Scan the table with strongly consistent reads:
// finding a key by ID costs a read of the whole table, which saves a
// secondary index and its write cost on every Create; Revoke and SetLimit
// then write with a conditional UpdateItem. Key IDs are 80 random bits;
// their uniqueness is not checked by Create.
//
// A DynamoStore holds no state of its own and is safe for concurrent use.
type DynamoStore struct {
	api   DynamoAPI
	table string
	now   func() time.Time

	scanLimit int32 // items per Scan page; 0: DynamoDB's 1 MB pages (tests lower it)
}

var _ Admin = (*DynamoStore)(nil)

// NewDynamoStore returns a store over cfg.Table. It makes no request.
func NewDynamoStore(cfg DynamoConfig) (*DynamoStore, error) {
	if cfg.Client == nil {
		return nil, errors.New("apikey: dynamodb client is nil")
	}
	if cfg.Table == "" {
		return nil, errors.New("apikey: dynamodb table name is empty")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &DynamoStore{api: cfg.Client, table: cfg.Table, now: cfg.Now}, nil
}

// Table returns the table name.
func (s *DynamoStore) Table() string { return s.table }

// Lookup implements Store.
func (s *DynamoStore) Lookup(ctx context.Context, key string) (Record, error) {
	return lookup(ctx, key, s.now, s.find)
}

func (s *DynamoStore) find(ctx context.Context, hash string) (Record, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            aws.String(s.table),
		Key:                  map[string]types.AttributeValue{AttrKeyHash: str(hash)},
		ConsistentRead:       aws.Bool(false),
		ProjectionExpression: aws.String("#h, #i, #t, #r, #l, #e"),
		ExpressionAttributeNames: map[string]string{
			"#h": AttrKeyHash, "#i": AttrID, "#t": AttrTier, "#r": AttrRevoked,
			"#l": AttrLimit, "#e": AttrExpiresAt,
		},
	})
	if err != nil {
		return Record{}, fmt.Errorf("apikey: dynamodb get item: %w", err)
	}
	if len(out.Item) == 0 {
		return Record{}, ErrNotFound
	}
	var rec Record
	var derr error
	rec.Hash = getS(out.Item, AttrKeyHash, &derr)
	rec.ID = getS(out.Item, AttrID, &derr)
	rec.Tier = getS(out.Item, AttrTier, &derr)
	rec.Revoked = getBool(out.Item, AttrRevoked, &derr)
	rec.Limit = getLimit(out.Item, &derr)
	rec.ExpiresAt = getOptionalTime(out.Item, AttrExpiresAt, &derr)
	if derr != nil {
		return Record{}, fmt.Errorf("apikey: dynamodb item with id %s: %w", quoteID(rec.ID), derr)
	}
	return rec, nil
}

// Create implements Admin.
func (s *DynamoStore) Create(ctx context.Context, rec Record) error {
	if err := ValidateRecord(rec); err != nil {
		return err
	}
	_, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(s.table),
		Item:                     toItem(rec),
		ConditionExpression:      aws.String("attribute_not_exists(#h)"),
		ExpressionAttributeNames: map[string]string{"#h": AttrKeyHash},
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return fmt.Errorf("%w: a key with this hash", ErrExists)
	case err != nil:
		return fmt.Errorf("apikey: dynamodb put item: %w", err)
	}
	return nil
}

// List implements Admin.
func (s *DynamoStore) List(ctx context.Context) ([]Record, error) {
	var out []Record
	err := s.scan(ctx, nil, func(item map[string]types.AttributeValue) error {
		rec, err := fromItem(item)
		if err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortRecords(out)
	return out, nil
}

// findByID scans for the items with the given ID (there should be one).
// None gives ErrNotFound.
func (s *DynamoStore) findByID(ctx context.Context, id string) ([]Record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: no key with id %s", ErrNotFound, quoteID(id))
	}
	var found []Record
	err := s.scan(ctx, &dynamodb.ScanInput{
		FilterExpression:          aws.String("#i = :id"),
		ExpressionAttributeNames:  map[string]string{"#i": AttrID},
		ExpressionAttributeValues: map[string]types.AttributeValue{":id": str(id)},
	}, func(item map[string]types.AttributeValue) error {
		rec, err := fromItem(item)
		if err != nil {
			return err
		}
		found = append(found, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%w: no key with id %s", ErrNotFound, quoteID(id))
	}
	return found, nil
}

// Revoke implements Admin. Every item with the ID is revoked (there should
// be one).
func (s *DynamoStore) Revoke(ctx context.Context, id string) error {
	found, err := s.findByID(ctx, id)
	if err != nil {
		return err
	}
	at := s.now().UTC().Truncate(time.Microsecond)
	for _, rec := range found {
		if rec.Revoked {
			continue
		}
		_, err := s.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           aws.String(s.table),
			Key:                 map[string]types.AttributeValue{AttrKeyHash: str(rec.Hash)},
			UpdateExpression:    aws.String("SET #r = :t, #ra = :at"),
			ConditionExpression: aws.String("#i = :id AND #r = :f"),
			ExpressionAttributeNames: map[string]string{
				"#r": AttrRevoked, "#ra": AttrRevokedAt, "#i": AttrID,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":t": &types.AttributeValueMemberBOOL{Value: true}, ":f": &types.AttributeValueMemberBOOL{Value: false},
				":at": str(at.Format(time.RFC3339Nano)), ":id": str(id),
			},
		})
		var ccf *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &ccf):
			// Revoked (or deleted) by someone else since the scan: either
			// way the key no longer works, which is what was asked.
		case err != nil:
			return fmt.Errorf("apikey: dynamodb update item (id %s): %w", id, err)
		}
	}
	return nil
}

// SetLimit implements Admin: it finds the key by ID as Revoke does, then
// sets (or, for the zero Policy, removes) its limit attribute with an
// UpdateItem on the condition that the item still has the ID and is not
// revoked.
func (s *DynamoStore) SetLimit(ctx context.Context, id string, p limiter.Policy) error {
	if err := ValidateLimit(p); err != nil {
		return err
	}
	found, err := s.findByID(ctx, id)
	if err != nil {
		return err
	}
	for _, rec := range found {
		if rec.Revoked {
			return fmt.Errorf("%w: key with id %s is revoked", ErrRevoked, quoteID(id))
		}
	}
	for _, rec := range found {
		in := &dynamodb.UpdateItemInput{
			TableName:           aws.String(s.table),
			Key:                 map[string]types.AttributeValue{AttrKeyHash: str(rec.Hash)},
			UpdateExpression:    aws.String("REMOVE #l"),
			ConditionExpression: aws.String("#i = :id AND (attribute_not_exists(#r) OR #r = :f)"),
			ExpressionAttributeNames: map[string]string{
				"#l": AttrLimit, "#r": AttrRevoked, "#i": AttrID,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":f": &types.AttributeValueMemberBOOL{Value: false}, ":id": str(id),
			},
		}
		if !p.IsZero() {
			in.UpdateExpression = aws.String("SET #l = :l")
			in.ExpressionAttributeValues[":l"] = str(p.String())
		}
		_, err := s.api.UpdateItem(ctx, in)
		var ccf *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &ccf):
			return fmt.Errorf("%w: key with id %s was revoked or removed meanwhile", ErrRevoked, quoteID(id))
		case err != nil:
			return fmt.Errorf("apikey: dynamodb update item (id %s): %w", id, err)
		}
	}
	return nil
}

// scan runs a paginated, strongly consistent Scan and calls fn per item.
// in supplies the filter; nil scans everything.
func (s *DynamoStore) scan(ctx context.Context, in *dynamodb.ScanInput, fn func(map[string]types.AttributeValue) error) error {
	if in == nil {
		in = &dynamodb.ScanInput{}
	}
	in.TableName = aws.String(s.table)
	in.ConsistentRead = aws.Bool(true)
	if s.scanLimit > 0 {
		in.Limit = aws.Int32(s.scanLimit)
	}
	p := dynamodb.NewScanPaginator(s.api, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("apikey: dynamodb scan: %w", err)
		}
		for _, item := range page.Items {
			if err := fn(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// TableCreator is the part of *dynamodb.Client that CreateTable uses.
type TableCreator interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// CreateTable creates a keys table with the schema DynamoStore expects
// (partition key keyHash of type S, on-demand billing, no index) and waits
// up to two minutes for it to become ACTIVE. template.yaml's ApiKeysTable
// declares the same schema; CreateTable is for local endpoints and tests.
func CreateTable(ctx context.Context, client TableCreator, table string) error {
	if table == "" {
		return errors.New("apikey: dynamodb table name is empty")
	}
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrKeyHash), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrKeyHash), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		return fmt.Errorf("apikey: create table %s: %w", table, err)
	}
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("apikey: wait for table %s: %w", table, err)
	}
	return nil
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func toItem(rec Record) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		AttrKeyHash:   str(rec.Hash),
		AttrID:        str(rec.ID),
		AttrName:      str(rec.Name),
		AttrTier:      str(rec.Tier),
		AttrCreatedAt: str(rec.CreatedAt.UTC().Format(time.RFC3339Nano)),
		AttrRevoked:   &types.AttributeValueMemberBOOL{Value: rec.Revoked},
	}
	if rec.Revoked {
		item[AttrRevokedAt] = str(rec.RevokedAt.UTC().Format(time.RFC3339Nano))
	}
	if !rec.Limit.IsZero() {
		item[AttrLimit] = str(rec.Limit.String())
	}
	if !rec.ExpiresAt.IsZero() {
		item[AttrExpiresAt] = str(rec.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	return item
}

func fromItem(item map[string]types.AttributeValue) (Record, error) {
	var rec Record
	var err error
	rec.Hash = getS(item, AttrKeyHash, &err)
	rec.ID = getS(item, AttrID, &err)
	rec.Tier = getS(item, AttrTier, &err)
	rec.Revoked = getBool(item, AttrRevoked, &err)
	if v, ok := item[AttrName]; ok {
		if s, ok := v.(*types.AttributeValueMemberS); ok {
			rec.Name = s.Value
		} else if err == nil {
			err = fmt.Errorf("attribute %s is not a string", AttrName)
		}
	}
	rec.CreatedAt = getTime(item, AttrCreatedAt, &err)
	if rec.Revoked {
		rec.RevokedAt = getTime(item, AttrRevokedAt, &err)
	}
	rec.Limit = getLimit(item, &err)
	rec.ExpiresAt = getOptionalTime(item, AttrExpiresAt, &err)
	if err != nil {
		return Record{}, fmt.Errorf("apikey: dynamodb item with id %s: %w", quoteID(rec.ID), err)
	}
	return rec, nil
}

// getS returns a required string attribute; on failure it records the
// first error in *err and returns "".
func getS(item map[string]types.AttributeValue, name string, err *error) string {
	v, ok := item[name]
	if !ok {
		if *err == nil {
			*err = fmt.Errorf("attribute %s is missing", name)
		}
		return ""
	}
	s, ok := v.(*types.AttributeValueMemberS)
	if !ok {
		if *err == nil {
			*err = fmt.Errorf("attribute %s is not a string", name)
		}
		return ""
	}
	return s.Value
}

// getBool returns a boolean attribute; a missing one is false.
func getBool(item map[string]types.AttributeValue, name string, err *error) bool {
	v, ok := item[name]
	if !ok {
		return false
	}
	b, ok := v.(*types.AttributeValueMemberBOOL)
	if !ok {
		if *err == nil {
			*err = fmt.Errorf("attribute %s is not a boolean", name)
		}
		return false
	}
	return b.Value
}

func getTime(item map[string]types.AttributeValue, name string, err *error) time.Time {
	s := getS(item, name, err)
	if s == "" {
		return time.Time{}
	}
	t, perr := time.Parse(time.RFC3339Nano, s)
	if perr != nil {
		if *err == nil {
			*err = fmt.Errorf("attribute %s is not an RFC 3339 time", name)
		}
		return time.Time{}
	}
	return t.UTC()
}

// getOptionalTime returns a time attribute, or the zero time when absent.
func getOptionalTime(item map[string]types.AttributeValue, name string, err *error) time.Time {
	if _, ok := item[name]; !ok {
		return time.Time{}
	}
	t := getTime(item, name, err)
	if t.IsZero() && *err == nil {
		*err = fmt.Errorf("attribute %s is not an RFC 3339 time", name)
	}
	return t
}

// getLimit returns the limit attribute, or the zero Policy when absent.
func getLimit(item map[string]types.AttributeValue, err *error) limiter.Policy {
	if _, ok := item[AttrLimit]; !ok {
		return limiter.Policy{}
	}
	var serr error
	s := getS(item, AttrLimit, &serr)
	if serr != nil {
		if *err == nil {
			*err = serr
		}
		return limiter.Policy{}
	}
	p, perr := parseStoredLimit(s)
	if perr != nil {
		if *err == nil {
			*err = fmt.Errorf("attribute %s: %w", AttrLimit, perr)
		}
		return limiter.Policy{}
	}
	return p
}
